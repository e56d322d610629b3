"""Every request body shares one input base (`app.core.schemas.InputModel`): NUL characters
are refused in every string field of every write operation, and every length limit a schema
declares is the limit of the column the value is stored in. Both walks are generated (from
the OpenAPI document and from the schema classes), so a new operation or field is covered
without touching this file."""

from __future__ import annotations

import io
import re
import typing
from typing import Any

import annotated_types
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from pydantic.fields import FieldInfo
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession

import app.models  # noqa: F401 - every table registered
from app.articles.models import Article, Correction
from app.auth.models import ApiToken
from app.categories.models import Category
from app.comments.models import Comment
from app.core.schemas import InputModel
from app.media.models import Media
from app.tags.models import Tag
from app.users.models import Role, User
from app.webhooks.models import Webhook
from tests.factories import bearer, make_article, make_category, make_tag, make_token, make_user
from tests.support import assert_problem

NUL = "with\x00nul"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _is_string(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(document, schema)
    if schema.get("type") == "string":
        return True
    return any(_is_string(document, s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _string_array(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(document, schema)
    if schema.get("type") == "array":
        return _is_string(document, schema.get("items", {}))
    return any(_string_array(document, s) for s in schema.get("anyOf", []))


def nul_cases(document: dict[str, Any]) -> list[tuple[str, str, str, str, Any]]:
    """(method, path, media type, field, value) for every string field (or list of
    strings) of every request body the API documents."""
    cases = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type in (JSON, FORM):
                if media_type not in content:
                    continue
                body = _resolve(document, content[media_type]["schema"])
                for name, field in body.get("properties", {}).items():
                    if _is_string(document, field):
                        cases.append((method.upper(), path, media_type, name, NUL))
                    elif _string_array(document, field):
                        cases.append((method.upper(), path, media_type, name, [NUL]))
    return cases


class TestNulCharacters:
    async def test_every_string_field_of_every_write_operation_refuses_nul(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        article = await make_article(session, admin)
        category = await make_category(session)
        tag = await make_tag(session)
        hook = Webhook(url="https://hooks.example/x", events=["article.published"], secret="s")
        session.add(hook)
        await session.commit()
        posted = await client.post(
            f"/api/v1/articles/{article.id}/comments",
            json={"author_name": "R", "author_email": "r@example.com", "content": "Hello"},
        )
        assert posted.status_code == 201, posted.text
        image = io.BytesIO()
        Image.new("RGB", (40, 30)).save(image, "PNG")
        uploaded = await client.post(
            "/api/v1/media",
            files={"file": ("a.png", image.getvalue(), "image/png")},
            headers=bearer(token),
        )
        assert uploaded.status_code == 201, uploaded.text
        ids = {
            "media_id": uploaded.json()["id"],
            "article_id": article.id,
            "category_id": category.id,
            "tag_id": tag.id,
            "comment_id": posted.json()["id"],
            "user_id": admin.id,
            "webhook_id": hook.id,
        }
        cases = nul_cases(app.openapi())
        operations = {(method, path) for method, path, *_ in cases}
        # Articles, corrections, categories, tags, comments, bulk moderation, privacy
        # erasure, users, tokens, webhooks and the login form at least.
        assert len(operations) >= 20, sorted(operations)
        assert ("POST", "/api/v1/auth/token") in operations
        refused, failures = [], []
        for method, path, media_type, field, value in cases:
            url = re.sub(r"{(\w+)}", lambda m: str(ids[m.group(1)]), path)
            sent: dict[str, Any] = (
                {"json": {field: value}} if media_type == JSON else {"data": {field: value}}
            )
            if media_type == "multipart/form-data" and field != "file":
                sent["files"] = {"file": ("a.png", image.getvalue(), "image/png")}
            response = await client.request(method, url, headers=bearer(token), **sent)
            label = f"{method} {path} {field}"
            if response.status_code != 422:
                failures.append(f"{label}: {response.status_code}")
                continue
            body = assert_problem(response, 422)
            if field not in {e["field"].split(".")[0] for e in body["errors"]}:
                failures.append(f"{label}: NUL not refused")
                continue
            refused.append(label)
        assert not failures, failures
        assert len(refused) >= 60, refused
        # Nothing was written by any of them.
        assert (await client.get("/api/v1/categories")).json()["total"] == 1


def _schemas() -> list[type[InputModel]]:
    found: list[type[InputModel]] = []
    todo: list[type[InputModel]] = [InputModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def _tables() -> dict[str, tuple[type[Any] | None, dict[str, str | None]]]:
    """Each input schema's table, and its fields stored under another name (`None`: not
    stored as given: hashed, looked up, or steering the write)."""
    return {
        "ArticleCreate": (Article, {"tags": "tags.name", "category_ids": None}),
        "ArticleReplace": (Article, {"tags": "tags.name", "category_ids": None}),
        "ArticleUpdate": (Article, {"tags": "tags.name", "category_ids": None}),
        "_ArticleFields": (Article, {"tags": "tags.name", "category_ids": None}),
        "CorrectionCreate": (Correction, {}),
        "CategoryCreate": (Category, {}),
        "CategoryUpdate": (Category, {}),
        "TagCreate": (Tag, {}),
        "TagUpdate": (Tag, {}),
        "CommentCreate": (Comment, {"content": "content_source", "website": None}),
        "CommentEdit": (Comment, {"content": "content_source"}),
        "BulkAction": (None, {}),
        "ErasureRequest": (None, {}),
        "UserCreate": (User, {"password": None}),
        "UserUpdate": (User, {"password": None}),
        "ApiTokenCreate": (ApiToken, {"scopes": None}),
        "LoginForm": (None, {}),
        "WebhookCreate": (Webhook, {}),
        "WebhookUpdate": (Webhook, {}),
        "MediaUpload": (Media, {}),
        "MediaUpdate": (Media, {}),
    }


def _max_length(annotation: Any, metadata: list[Any]) -> int | None:
    """The field's own limit, or the one in its `Annotated` type (`WebUrl | None`)."""
    for item in metadata:
        if isinstance(item, annotated_types.MaxLen):
            return int(item.max_length)
        if isinstance(item, FieldInfo):
            inner = _max_length(None, list(item.metadata))
            if inner is not None:
                return inner
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            inner = _max_length(arg, list(arg.__metadata__))
            if inner is not None:
                return inner
    return None


def _item_max_length(annotation: Any) -> int | None:
    """The limit on each element of a list field (e.g. each tag name)."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list:
            (element,) = typing.get_args(arg)
            if typing.get_origin(element) is typing.Annotated:
                return _max_length(element, list(element.__metadata__))
        found = _item_max_length(arg)
        if found is not None:
            return found
    return None


class TestLimitsMatchColumns:
    def test_every_schema_limit_is_its_columns(self) -> None:
        tables = _tables()
        schemas = _schemas()
        unknown = [s.__name__ for s in schemas if s.__name__ not in tables]
        assert not unknown, f"say where these schemas are stored: {unknown}"
        checked = []
        mismatches = []
        for schema in schemas:
            model, renamed = tables[schema.__name__]
            for name, info in schema.model_fields.items():
                limit = _max_length(info.annotation, list(info.metadata))
                column_name = renamed.get(name, name)
                if column_name is not None and column_name.endswith(".name"):
                    limit = _item_max_length(info.annotation)
                if limit is None or model is None or column_name is None:
                    continue
                if column_name == "tags.name":
                    column = Tag.__table__.c["name"]
                else:
                    table = model.__table__
                    assert column_name in table.c, f"{schema.__name__}.{name}: no column"
                    column = table.c[column_name]
                length = column.type.length if isinstance(column.type, String) else None
                checked.append(f"{schema.__name__}.{name}")
                # A Text column has no length: the schema's limit is the only one.
                if length is not None and length != limit:
                    mismatches.append(f"{schema.__name__}.{name}: {limit} vs {column}({length})")
        assert not mismatches, mismatches
        assert len(checked) >= 40, checked


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"comment_moderation": "none", "comment_flood_seconds": 0, "comment_rate_limit": ""}
