"""No public endpoint, error or log line ever carries a commenter's email, IP address or user
agent, nor an unsalted hash of the email. The walk is generated from the app's route table,
so every new public endpoint is walked too."""

from __future__ import annotations

import ast
import hashlib
import logging
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.users.models import Role
from tests.factories import PASSWORD, bearer, make_article, make_token, make_user
from tests.support import ROOT, app_routes

EMAIL = "Secret.Reader@Example.COM"
STORED_EMAIL = EMAIL.lower()
USER_AGENT = "PrivateAgent/9.9 (reader-device)"
CLIENT_IP = "203.0.113.7"


def forbidden_strings() -> list[str]:
    variants = {EMAIL, STORED_EMAIL, "secret.reader", CLIENT_IP, "PrivateAgent"}
    for value in (EMAIL, STORED_EMAIL, STORED_EMAIL.strip()):
        variants.add(hashlib.md5(value.encode()).hexdigest())  # noqa: S324 - looking for it
        variants.add(hashlib.sha256(value.encode()).hexdigest())
    return sorted(variants, key=str.lower)


def assert_clean(text: str, where: str) -> None:
    lowered = text.lower()
    for secret in forbidden_strings():
        assert secret.lower() not in lowered, f"{secret!r} leaked into {where}"


def assert_answer_clean(response: httpx.Response) -> None:
    assert_clean(response.text + str(dict(response.headers)), str(response.request.url))


def path_values(article: Article, comment_id: int) -> dict[str, Any]:
    return {
        "article_id": article.id,
        "slug": article.slug,
        "number": article.number,
        "comment_id": comment_id,
        "category_id": article.category_id or 1,
        "tag_id": 1,
        "user_id": 1,
        "token_id": 1,
        "revision_id": 1,
        "correction_id": 1,
        "page": 1,
        "n": 1,
        "path": "swagger-ui.css",
        "problem": "rate-limited",
        "webhook_id": 1,
        "delivery_id": "00000000-0000-0000-0000-000000000000",
        "media_id": 1,
        "key": "2026/12/0000000000000000/none.jpg",
    }


def public_get_paths(app: FastAPI, values: dict[str, Any]) -> list[str]:
    paths = []
    for path, methods in app_routes(app):
        if "GET" not in methods:
            continue
        names = re.findall(r"{(\w+)(?::\w+)?}", path)
        missing = [n for n in names if n not in values]
        assert not missing, f"add a value for {missing} of {path} to path_values()"
        paths.append(re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(values[m.group(1)]), path))
    return paths


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"comment_moderation": "none", "comment_flood_seconds": 0, "comment_rate_limit": ""}


async def test_no_public_endpoint_or_log_line_leaks_a_commenter(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    author = await make_user(session, role=Role.author, display_name="Pat")
    article = await make_article(session, author, tags=["Privacy"])
    headers = {"User-Agent": USER_AGENT}
    base = f"/api/v1/articles/{article.id}/comments"
    first = await client.post(
        base,
        json={"author_name": "Sam", "author_email": EMAIL, "content": "First!"},
        headers=headers,
    )
    assert first.status_code == 201
    reply = await client.post(
        base,
        json={
            "author_name": "Sam",
            "author_email": EMAIL,
            "content": "Replying to myself",
            "parent_id": first.json()["id"],
        },
        headers=headers,
    )
    assert reply.status_code == 201
    # Errors too: a duplicate, a bad parent, a malformed body.
    duplicate = await client.post(
        base, json={"author_name": "Sam", "author_email": EMAIL, "content": "First!"}
    )
    assert duplicate.status_code == 409
    bad = await client.post(base, json={"author_name": "Sam", "author_email": EMAIL + "@@"})
    assert bad.status_code == 422
    responses = [first, reply, duplicate, bad]

    paths = public_get_paths(app, path_values(article, first.json()["id"]))
    assert len(paths) >= 10
    for path in paths:
        for query in ("", "?tree=true", "?q=Sam"):
            responses.append(await client.get(path + query))
    walked = [r for r in responses if r.status_code == 200]
    assert len(walked) >= 10, "the walk must actually read public data"
    assert any("First!" in r.text for r in walked), "comments were present during the walk"

    for response in responses:
        assert_answer_clean(response)
    for record in caplog.records:
        assert_clean(record.getMessage() + str(record.__dict__), "a log line")


# A database error forced where readers' data is written: every comment and every token
# insert fails, as an unexpected error would (a full disk, a bug, a broken constraint).
_FORCED = {
    "postgresql": [
        "CREATE FUNCTION forced_failure() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'forced failure'; END $$",
        *(
            f"CREATE TRIGGER forced_failure BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION forced_failure()"
            for table in ("comments", "api_tokens")
        ),
    ],
    "sqlite": [
        f"CREATE TRIGGER forced_failure_{table} BEFORE INSERT ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
        for table in ("comments", "api_tokens")
    ],
}
_UNFORCED = {
    "postgresql": [
        "DROP TRIGGER forced_failure ON comments",
        "DROP TRIGGER forced_failure ON api_tokens",
        "DROP FUNCTION forced_failure()",
    ],
    "sqlite": [f"DROP TRIGGER forced_failure_{table}" for table in ("comments", "api_tokens")],
}
# A SHA-256 digest in hex: an edit token's, an API token's, a request body's.
_DIGEST = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


async def test_failed_requests_leave_no_reader_data_in_answers_or_logs(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    author = await make_user(session, role=Role.author, display_name="Pat")
    article = await make_article(session, author)
    token = await make_token(session, author)
    base = f"/api/v1/articles/{article.id}/comments"
    comment = {
        "author_name": "Sam",
        "author_email": EMAIL,
        "author_url": "https://reader.example/" + "a" * 2040,
        "content": "Over the limit",
    }
    headers = {"User-Agent": USER_AGENT}
    # Longer than the column: refused before it reaches the database.
    over_long = await client.post(base, json=comment, headers={**headers, "Idempotency-Key": "k1"})
    assert over_long.status_code == 422
    dialect = app.state.engine.dialect.name
    async with app.state.engine.begin() as connection:
        for statement in _FORCED[dialect]:
            await connection.exec_driver_sql(statement)
    try:
        comment["author_url"] = "https://reader.example/"
        failed = [
            await client.post(base, json=comment, headers={**headers, "Idempotency-Key": "k2"}),
            await client.post(base, json=comment, headers=headers),
            await client.post(
                "/api/v1/tokens", json={"name": "script"}, headers={**headers, **bearer(token)}
            ),
            await client.post(
                "/api/v1/auth/token",
                data={"username": author.username, "password": PASSWORD},
                headers=headers,
            ),
        ]
    finally:
        async with app.state.engine.begin() as connection:
            for statement in _UNFORCED[dialect]:
                await connection.exec_driver_sql(statement)
    assert [r.status_code for r in failed] == [500] * 4, [r.text for r in failed]
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) >= 4, "each failure is logged with its traceback"
    (handler,) = [h for h in logging.getLogger().handlers if type(h).__name__ == "_JsonHandler"]
    lines = [handler.format(record) for record in caplog.records]
    assert any("forced failure" in line for line in lines), "the database's own error is logged"
    for response in [over_long, *failed]:
        assert_answer_clean(response)
    for line in lines:
        assert_clean(line, line[:300])
        assert not _DIGEST.search(line.lower()), f"a digest leaked into {line[:300]}"


def test_every_engine_the_service_creates_hides_parameters() -> None:
    """Read from the source, so an engine added anywhere in the service or its migrations
    is held to the rule: a statement's parameters never reach an error message."""
    calls = []
    for path in [*(ROOT / "app").rglob("*.py"), ROOT / "migrations" / "env.py"]:
        tree = ast.parse(path.read_text())
        # SQLAlchemy's engine factories, under whatever name the module imported them.
        factories = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
            for alias in node.names
            if alias.name in ("create_engine", "create_async_engine")
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in factories:
                hidden = any(
                    k.arg == "hide_parameters"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", hidden))
    assert len(calls) >= 3, calls
    assert all(hidden for _, hidden in calls), calls
