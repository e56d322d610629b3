"""The response cache: fast reads that are never stale after a write returns."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.core.db import utcnow
from app.core.response_cache import Generation, watch_schedule
from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "response_cache": True,
        "cache_generation_file": tmp_path / "generation",
        "comment_moderation": "none",
        "comment_flood_seconds": 0,
    }


async def test_a_hit_is_served_without_touching_the_database(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session), title="Cached")
    first = await client.get(f"/api/v1/articles/{article.id}")
    # Behind the app's back (no write through the API): a hit cannot notice.
    await session.execute(update(Article).where(Article.id == article.id).values(title="Changed"))
    await session.commit()
    second = await client.get(f"/api/v1/articles/{article.id}")
    assert second.json()["title"] == "Cached"
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert (
        await client.get(
            f"/api/v1/articles/{article.id}", headers={"If-None-Match": first.headers["etag"]}
        )
    ).status_code == 304


async def test_a_write_through_the_api_is_seen_by_the_next_read(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    article = await make_article(session, editor, title="Before")
    assert (await client.get("/api/v1/articles")).json()["items"][0]["title"] == "Before"
    changed = await client.patch(
        f"/api/v1/articles/{article.id}", json={"title": "After"}, headers=bearer(token)
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/articles")).json()["items"][0]["title"] == "After"
    assert (await client.get(f"/api/v1/articles/{article.id}")).json()["title"] == "After"
    unpublished = await client.patch(
        f"/api/v1/articles/{article.id}", json={"status": "draft"}, headers=bearer(token)
    )
    assert unpublished.status_code == 200
    assert (await client.get(f"/api/v1/articles/{article.id}")).status_code == 404
    assert (await client.get("/api/v1/articles")).json()["items"] == []


async def test_a_removed_comment_disappears_at_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    article = await make_article(session, editor)
    path = f"/api/v1/articles/{article.id}/comments"
    made = await client.post(
        path, json={"author_name": "R", "author_email": "r@example.com", "content": "hello"}
    )
    assert (await client.get(path)).json()["total"] == 1
    await client.delete(f"/api/v1/comments/{made.json()['id']}", headers=bearer(token))
    assert (await client.get(path)).json()["total"] == 0


async def test_token_holders_and_commenters_are_never_served_from_the_cache(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    await make_article(session, editor, status=ArticleStatus.draft, title="Draft")
    public = await client.get("/api/v1/articles?status=draft")
    assert public.status_code == 401
    mine = await client.get("/api/v1/articles?status=draft", headers=bearer(token))
    assert [i["title"] for i in mine.json()["items"]] == ["Draft"]
    again = await client.get("/api/v1/articles?status=draft")
    assert again.status_code == 401, "the token holder's answer was not stored for others"


async def test_other_workers_see_the_write(
    app: Any, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session), title="Old")
    await client.get(f"/api/v1/articles/{article.id}")
    await session.execute(update(Article).where(Article.id == article.id).values(title="New"))
    await session.commit()
    # Another process on the machine wrote and moved the shared generation.
    Generation(app.state.settings.cache_generation_file).bump()
    assert (await client.get(f"/api/v1/articles/{article.id}")).json()["title"] == "New"


async def test_the_schedule_watch_moves_the_generation_when_an_article_goes_live(
    tmp_path: Path,
) -> None:
    generation = Generation(tmp_path / "g")
    soon = utcnow() + timedelta(milliseconds=300)
    calls = 0

    async def next_scheduled() -> Any:
        nonlocal calls
        calls += 1
        return soon if calls == 1 else None

    import asyncio

    task = asyncio.create_task(watch_schedule(next_scheduled, generation, recheck=5))
    await asyncio.sleep(1.5)
    task.cancel()
    assert generation.read() == 1
