"""Declared error responses, so the OpenAPI document lists every status a route gives."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries in problem+json for the given statuses (and 503, which
    any route that touches the database can give)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "model": Problem,
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


def problem_content(schema: dict[str, Any]) -> None:
    """Rewrite error responses of a generated OpenAPI document to problem+json.

    FastAPI files every declared model under `application/json` and adds its own
    validation-error schema; the API answers every error in one shape, so say so."""
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
