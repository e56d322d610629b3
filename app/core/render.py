"""Responses serialised once, straight to bytes, with `fields=` trimming.

Routes that return `json(...)` skip FastAPI's second pass over the data (they still declare
`response_model` for the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel
from starlette.responses import Response

from app.core.errors import InvalidInput
from app.core.http_cache import etag_for

FieldsParam = Annotated[
    str | None,
    Query(
        max_length=500,
        description="Comma-separated field names: trim the response (each list item) to them.",
        examples=["id,title,slug"],
    ),
]


def parse_fields(fields: str | None, model: type[BaseModel]) -> set[str] | None:
    """The requested field names, checked against `model`; an unknown one is a 422."""
    if fields is None:
        return None
    names = {f.strip() for f in fields.split(",") if f.strip()}
    unknown = sorted(names - set(model.model_fields))
    if unknown or not names:
        raise InvalidInput(
            f"Unknown field(s): {', '.join(unknown) or '(none given)'}. "
            f"Known: {', '.join(model.model_fields)}.",
            field="fields",
            location="query",
        )
    return names


def trim_tree(node: dict[str, Any], fields: set[str], nested: str) -> dict[str, Any]:
    """`fields` applied at every depth of a tree (the `nested` lists), not only to the
    top-level items; the lists themselves are kept only when asked for."""
    out = {key: value for key, value in node.items() if key in fields}
    if nested in out:
        out[nested] = [trim_tree(child, fields, nested) for child in out[nested]]
    return out


def json(
    model: BaseModel,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    fields: set[str] | None = None,
    list_fields: bool = False,
    version: int | None = None,
) -> Response:
    """Serialise `model` once. `fields` trims the model, or each of its `items` when
    `list_fields`. `version` (a row's write counter) goes into the ETag for If-Match."""
    include: Any = None
    if fields is not None:
        include = (
            {"items": {"__all__": fields}}
            | {k: True for k in type(model).model_fields if k != "items"}
            if list_fields
            else fields
        )
    body = model.model_dump_json(include=include).encode()
    response = Response(
        body, status_code=status_code, media_type="application/json", headers=headers
    )
    if version is not None:
        response.headers["ETag"] = etag_for(body, version)
    return response
