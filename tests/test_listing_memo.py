"""Remembered listing answers stay exact (app.articles.memo): totals, deep-page positions and
the relevance window follow every write that changes a listing, from any process or from
outside the service, and the clock. Also the read path's autocommit connection, which
survives the database dropping it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service
from app.core.db import utcnow
from app.main import create_app
from app.users.models import Role
from tests.conftest import make_settings
from tests.factories import auth_headers, insert_article, make_article, make_category, make_user

API = "/api/v1/articles"


async def generation(session: AsyncSession) -> int:
    value = await session.scalar(text("SELECT value FROM listing_generation WHERE id = 1"))
    await session.commit()
    assert value is not None
    return int(value)


async def listing(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"{API}?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestGeneration:
    async def test_article_changes_move_it_and_reader_comments_do_not(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await auth_headers(session, Role.editor)
        start = await generation(session)
        created = await client.post(
            API, json={"title": "Harbour", "status": "published"}, headers=editor
        )
        assert created.status_code == 201, created.text
        after_create = await generation(session)
        assert after_create > start

        comment = await client.post(
            f"{API}/{created.json()['id']}/comments",
            json={"author_name": "R", "author_email": "r@example.com", "content": "Hello"},
        )
        assert comment.status_code == 201, comment.text
        assert await generation(session) == after_create, "a comment must not recount lists"

        renamed = await client.patch(
            f"{API}/{created.json()['id']}", json={"title": "Harbour reopens"}, headers=editor
        )
        assert renamed.status_code == 200
        assert await generation(session) > after_create

    async def test_rows_written_behind_the_service_move_it(self, session: AsyncSession) -> None:
        start = await generation(session)
        await insert_article(session, await make_user(session), await make_category(session))
        assert await generation(session) > start


class TestTotals:
    async def test_a_total_follows_writes_made_through_another_process(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        database_url: str,
    ) -> None:
        author = await make_user(session)
        for _ in range(3):
            await make_article(session, author)
        assert (await listing(client))["total"] == 3
        assert (await client.get(f"{API}?tag=harbour")).status_code == 404

        other = create_app(make_settings(database_url))
        editor = await auth_headers(session, Role.editor)
        async with LifespanManager(other):
            transport = httpx.ASGITransport(app=other)
            async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
                made = await c.post(
                    API,
                    json={"title": "New", "status": "published", "tags": ["Harbour"]},
                    headers=editor,
                )
                assert made.status_code == 201, made.text
                assert (await listing(client))["total"] == 4
                assert (await listing(client, "tag=harbour"))["total"] == 1

                untagged = await c.patch(
                    f"{API}/{made.json()['id']}", json={"tags": []}, headers=editor
                )
                assert untagged.status_code == 200
                assert (await listing(client, "tag=harbour"))["total"] == 0

                gone = await c.delete(f"{API}/{made.json()['id']}", headers=editor)
                assert gone.status_code == 204
        assert (await listing(client))["total"] == 3

    async def test_a_scheduled_article_counts_once_its_time_comes(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        await make_article(session, author)
        due = utcnow() + timedelta(seconds=1.5)
        await make_article(session, author, title="Scheduled", published_at=due)
        before = await listing(client)
        assert before["total"] == 1
        await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.2)
        after = await listing(client)
        assert after["total"] == 2
        assert after["items"][0]["title"] == "Scheduled"


class TestDeepPages:
    async def test_pages_found_by_remembered_positions_match_the_full_list(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(service, "DEEP_OFFSET", 2)
        author = await make_user(session)
        category = await make_category(session)
        for _ in range(7):
            await make_article(session, author, category_id=category.id)

        async def walk(query: str) -> list[int]:
            ids: list[int] = []
            for page in range(1, 6):
                ids += [a["id"] for a in (await listing(client, f"{query}&page={page}"))["items"]]
            return ids

        for query in ("per_page=2", "per_page=2&order=published_at", "per_page=2&order=title"):
            full = [a["id"] for a in (await listing(client, query.replace("2", "100")))["items"]]
            assert await walk(query) == full, query

        # A newer article shifts every page by one: remembered positions must not survive.
        newest = await insert_article(session, author, category, published_at=utcnow())
        full = [a["id"] for a in (await listing(client, "per_page=100"))["items"]]
        assert full[0] == newest.id
        assert await walk("per_page=2") == full

    async def test_a_page_past_the_end_is_empty_with_the_total(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(service, "DEEP_OFFSET", 2)
        author = await make_user(session)
        for _ in range(3):
            await make_article(session, author)
        beyond = await listing(client, "per_page=2&page=9")
        assert beyond["items"] == []
        assert beyond["total"] == 3


class TestRelevanceWindow:
    async def test_the_newest_matches_are_ranked_and_older_ones_follow_by_date(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(service, "RELEVANCE_WINDOW", 3)
        author = await make_user(session)
        now = utcnow()
        made = {}
        # Newest first: n1, n2 (title match), n3, then o1, o2 (title match), o3.
        for hours, name, title in [
            (1, "n1", "Port news one"),
            (2, "n2", "Harbour reopens"),
            (3, "n3", "Port news three"),
            (4, "o1", "Port news four"),
            (5, "o2", "Harbour closes"),
            (6, "o3", "Port news six"),
        ]:
            made[name] = await make_article(
                session,
                author,
                title=title,
                body="<p>The harbour is busy again.</p>",
                published_at=now - timedelta(hours=hours),
            )
        await make_article(session, author, title="Unrelated", body="<p>Weather.</p>")
        order = [made[n].id for n in ("n2", "n1", "n3", "o1", "o2", "o3")]

        pages = [await listing(client, f"q=harbour&per_page=2&page={p}") for p in (1, 2, 3, 4)]
        assert [a["id"] for p in pages for a in p["items"]] == order
        assert all(p["total"] == 6 for p in pages)
        # A page that straddles the window's edge, and one wholly past it.
        straddling = await listing(client, "q=harbour&per_page=4&page=1")
        assert [a["id"] for a in straddling["items"]] == order[:4]
        past = await listing(client, "q=harbour&per_page=2&page=3")
        assert [a["id"] for a in past["items"]] == order[4:]

        # A new matching article enters the window: the remembered ranking is redone.
        fresh = await make_article(
            session,
            author,
            title="Harbour news",
            body="<p>The harbour again.</p>",
            published_at=utcnow(),
        )
        first = await listing(client, "q=harbour&per_page=10")
        assert first["total"] == 7
        assert fresh.id in [a["id"] for a in first["items"][:3]]


@pytest.mark.postgres_only
async def test_a_read_survives_the_database_dropping_its_connections(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session))
    assert (await client.get(f"{API}/{article.id}")).status_code == 200
    assert (await client.get(API)).status_code == 200
    # As on a database restart: every connection the service pooled is cut.
    await session.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    await session.commit()
    detail = await client.get(f"{API}/{article.id}")
    assert detail.status_code == 200, detail.text
    assert (await client.get(API)).status_code == 200


async def test_a_read_on_a_connection_found_dead_is_repeated_once(app: Any) -> None:
    """The driver reports a connection the database dropped as an invalidated DBAPIError on
    first use; `read_only` repeats the read on a fresh connection, once."""
    from sqlalchemy.exc import DBAPIError
    from starlette.requests import Request

    from app.core.db import read_only

    request = Request({"type": "http", "app": app, "headers": []})
    seen: list[object] = []

    async def flaky(db: Any) -> int:
        seen.append(db)
        if len(seen) == 1:
            raise DBAPIError("SELECT 1", None, ConnectionError("gone"), connection_invalidated=True)
        return int(await db.scalar(text("SELECT 41 + 1")))

    assert await read_only(request, flaky) == 42
    assert len(seen) == 2

    async def broken(db: Any) -> int:
        raise DBAPIError("SELECT 1", None, ConnectionError("gone"), connection_invalidated=True)

    with pytest.raises(DBAPIError):
        await read_only(request, broken)

    async def refused(db: Any) -> int:
        seen.append(db)
        raise DBAPIError("SELECT 1", None, ValueError("not a disconnect"))

    seen.clear()
    with pytest.raises(DBAPIError):
        await read_only(request, refused)
    assert len(seen) == 1, "only a dropped connection is worth a second try"
