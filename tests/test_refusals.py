"""Anonymous writes that keep being refused are answered 429 before routing
(`REFUSED_WRITE_LIMIT`), and nothing else is held up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.models import Role
from tests.conftest import make_settings
from tests.factories import bearer, make_article, make_token, make_user

COMMENT = {"author_name": "Reader", "author_email": "r@example.com", "content": "hello"}
PROXY = "10.0.0.2"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "refused_write_limit": "3/1 second",
        "trusted_proxies": [PROXY],
        "comment_moderation": "none",
        "comment_flood_seconds": 0,
        "comment_rate_limit": "",
    }


@pytest.fixture
async def proxied(app: FastAPI) -> Any:
    """Clients behind our proxy, told apart by X-Forwarded-For."""
    transport = httpx.ASGITransport(app=app, client=(PROXY, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def from_(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def refused(client: httpx.AsyncClient, address: str, times: int) -> list[int]:
    """Anonymous writes that need a token, from `address`: their statuses."""
    return [
        (
            await client.post("/api/v1/articles", json={"title": "x"}, headers=from_(address))
        ).status_code
        for _ in range(times)
    ]


async def test_past_the_limit_anonymous_writes_get_429_before_routing(
    proxied: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert await refused(proxied, "198.51.100.1", 3) == [401, 401, 401]
    blocked = await proxied.post(
        "/api/v1/articles", json={"title": "x"}, headers=from_("198.51.100.1")
    )
    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["type"] == "/problems/rate-limited"
    assert blocked.headers["retry-after"] == "1"
    assert blocked.headers["x-request-id"]
    # Every anonymous write from there, a comment included, until the window ends.
    article = await make_article(session, await make_user(session))
    comment = await proxied.post(
        f"/api/v1/articles/{article.id}/comments", json=COMMENT, headers=from_("198.51.100.1")
    )
    assert comment.status_code == 429, comment.text


async def test_reads_tokens_and_other_addresses_are_not_held_up(
    proxied: httpx.AsyncClient, session: AsyncSession
) -> None:
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    await refused(proxied, "198.51.100.1", 4)
    read = await proxied.get("/api/v1/articles", headers=from_("198.51.100.1"))
    assert read.status_code == 200, read.text
    with_token = await proxied.post(
        "/api/v1/articles",
        json={"title": "By an editor", "body": "<p>Text.</p>"},
        headers={**from_("198.51.100.1"), **bearer(token)},
    )
    assert with_token.status_code == 201, with_token.text
    assert await refused(proxied, "198.51.100.2", 1) == [401]


async def test_writes_that_succeed_are_not_counted(
    proxied: httpx.AsyncClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session))
    for n in range(5):
        posted = await proxied.post(
            f"/api/v1/articles/{article.id}/comments",
            json={**COMMENT, "content": f"comment {n}"},
            headers=from_("198.51.100.3"),
        )
        assert posted.status_code == 201, posted.text
    assert await refused(proxied, "198.51.100.3", 1) == [401]


async def test_the_window_ends(proxied: httpx.AsyncClient) -> None:
    assert await refused(proxied, "198.51.100.4", 4) == [401, 401, 401, 429]
    await asyncio.sleep(1.05)
    assert await refused(proxied, "198.51.100.4", 1) == [401]


async def test_redirects_and_validation_errors_count_too(proxied: httpx.AsyncClient) -> None:
    statuses = [
        (
            await proxied.post("/api/v1/articles/", json={}, headers=from_("198.51.100.5"))
        ).status_code,
        (
            await proxied.post(
                "/api/v1/articles/1/comments", json={"content": ""}, headers=from_("198.51.100.5")
            )
        ).status_code,
        (await proxied.delete("/api/v1/comments/1", headers=from_("198.51.100.5"))).status_code,
        (await proxied.post("/api/v1/articles", headers=from_("198.51.100.5"))).status_code,
    ]
    assert statuses[:3] == [307, 422, 401], statuses
    assert statuses[3] == 429, statuses


def test_a_limit_that_does_not_parse_is_refused_at_start(database_url: str) -> None:
    with pytest.raises(ValidationError, match="30/10 seconds"):
        make_settings(database_url, refused_write_limit="a lot")
    assert make_settings(database_url, refused_write_limit=" ").refused_write_limit == ""
