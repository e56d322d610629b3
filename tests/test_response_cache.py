"""The response cache: fast reads, invalidated by what a write changed and nothing more,
never stale after a write returns, and not to be poisoned or blown up from outside."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Response
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.cache import keys
from app.cache.channel import Listener
from app.cache.clock import KeyClock, slot_of
from app.cache.store import AlwaysUp, EntryStore, Refresher, ResponseCacheMiddleware, RouteTable
from app.core.db import utcnow
from app.core.http_cache import etag_for
from app.main import CACHED_PREFIXES, create_app
from app.users.models import Role
from tests.conftest import make_settings
from tests.factories import (
    bearer,
    make_article,
    make_category,
    make_tag,
    make_token,
    make_user,
)
from tests.support import app_routes

COMMENT = {"author_name": "Reader", "author_email": "r@example.com", "content": "hello"}


def cache_settings(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "response_cache": True,
        "cache_generation_file": tmp_path / "clock",
        "comment_moderation": "none",
        "comment_flood_seconds": 0,
        "comment_rate_limit": "",
        **overrides,
    }


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return cache_settings(tmp_path)


async def hit(client: httpx.AsyncClient, path: str, **kwargs: Any) -> bool:
    """Read `path` (twice if needed to fill the entry); True when served from the cache."""
    response = await client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.headers.get("x-cache") == "HIT"


async def cached_then_changed_behind(
    client: httpx.AsyncClient, session: AsyncSession
) -> tuple[int, str]:
    """An article page in the cache, then its title changed behind the app's back (as
    another instance would): (its id, its path)."""
    article = await make_article(session, await make_user(session), title="Old")
    path = f"/api/v1/articles/{article.id}"
    await warm(client, path)
    await session.execute(update(Article).where(Article.id == article.id).values(title="New"))
    await session.commit()
    return article.id, path


async def warm(client: httpx.AsyncClient, *paths: str) -> None:
    for path in paths:
        await client.get(path)
        assert await hit(client, path), f"{path} was not stored"


class TestServing:
    async def test_a_hit_is_served_without_touching_the_database(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session), title="Cached")
        first = await client.get(f"/api/v1/articles/{article.id}")
        assert first.headers["x-cache"] == "MISS"
        # Behind the app's back (no write through a service): a hit cannot notice.
        await session.execute(
            update(Article).where(Article.id == article.id).values(title="Changed")
        )
        await session.commit()
        second = await client.get(f"/api/v1/articles/{article.id}")
        assert second.headers["x-cache"] == "HIT"
        assert second.json()["title"] == "Cached"
        assert second.headers["etag"] == first.headers["etag"]
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        assert (
            await client.get(
                f"/api/v1/articles/{article.id}", headers={"If-None-Match": first.headers["etag"]}
            )
        ).status_code == 304

    async def test_a_page_without_a_route_etag_keeps_the_same_one_from_the_cache(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_article(session, await make_user(session))
        path = "/api/v1/articles?per_page=5&page=1"
        first = await client.get(path)
        assert first.headers["x-cache"] == "MISS", first.text
        again = await client.get("/api/v1/articles?page=1&per_page=5")
        assert again.headers["x-cache"] == "HIT"
        assert again.headers["etag"] == first.headers["etag"]
        assert again.content == first.content
        revalidated = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert revalidated.status_code == 304, revalidated.text

    async def test_every_cached_route_names_what_it_shows(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        """Generated from the route table: a cached GET route that labels nothing would
        never be stored (or, worse, never be purged from a CDN)."""
        author = await make_user(session, display_name="Ann Writer")
        category = await make_category(session, slug="world")
        tag = await make_tag(session, slug="vote")
        article = await make_article(
            session, author, category_id=category.id, tags=["vote"], title="Labelled"
        )
        made = await client.post(f"/api/v1/articles/{article.id}/comments", json=COMMENT)
        values = {
            "article_id": article.id,
            "slug": article.slug,
            "number": article.number,
            "category_id": category.id,
            "tag_id": tag.id,
            "comment_id": made.json()["id"],
            "revision_id": 1,
            "page": 1,
        }
        by_slug = {
            "/api/v1/categories/by-slug/{slug}": category.slug,
            "/api/v1/tags/by-slug/{slug}": tag.slug,
            "/api/v1/authors/{slug}": author.slug,
        }
        checked = 0
        for path, methods in app_routes(app):
            if "GET" not in methods or not path.startswith(CACHED_PREFIXES):
                continue
            url = path.replace("{slug}", str(by_slug.get(path, values["slug"])))
            url = url.format(**values)
            if path == "/api/v1/comments/unsubscribe":
                # A one-click action, not a read: it names nothing, so it is never stored.
                url += "?token=unknown"
                for _ in range(2):
                    response = await client.get(url)
                    assert "surrogate-key" not in response.headers
                    assert response.headers.get("x-cache") != "HIT"
                continue
            response = await client.get(url)
            if response.status_code == 401:
                continue  # for token holders only: never stored
            assert response.status_code == 200, (path, response.text)
            # Labelled for the response cache, which keeps the keys to itself: no CDN here.
            entry = app.state.cache_store.entries[url]
            labels = keys.parse(dict(entry.headers)[b"surrogate-key"].decode())
            assert keys.ALL in labels, path
            assert "surrogate-key" not in response.headers, path
            assert "cache-tag" not in response.headers, path
            assert await hit(client, url), path
            checked += 1
        assert checked >= 18

    async def test_token_holders_and_commenters_are_never_served_from_the_cache(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        await make_article(session, editor, status=ArticleStatus.draft, title="Draft")
        assert (await client.get("/api/v1/articles?status=draft")).status_code == 401
        mine = await client.get("/api/v1/articles?status=draft", headers=bearer(token))
        assert [i["title"] for i in mine.json()["items"]] == ["Draft"]
        assert "x-cache" not in mine.headers
        again = await client.get("/api/v1/articles?status=draft")
        assert again.status_code == 401, "the token holder's answer was not stored for others"

    async def test_errors_are_not_stored_and_say_no_store(self, client: httpx.AsyncClient) -> None:
        for _ in range(2):
            missing = await client.get("/api/v1/articles/424242")
            assert missing.status_code == 404
            assert missing.headers["cache-control"] == "no-store"
            assert missing.headers.get("x-cache") != "HIT"

    async def test_public_reads_may_be_served_stale_by_downstream_caches(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session))
        response = await client.get(f"/api/v1/articles/{article.id}")
        assert response.headers["cache-control"] == (
            "public, max-age=60, stale-while-revalidate=30, stale-if-error=86400"
        )


class TestInvalidation:
    async def test_a_write_through_the_api_is_seen_by_the_next_read(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        article = await make_article(session, editor, title="Before")
        await warm(client, "/api/v1/articles", f"/api/v1/articles/{article.id}")
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

    async def test_a_comment_drops_its_article_its_comments_and_lists_showing_it_only(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        world = await make_category(session)
        sport = await make_category(session)
        now = utcnow()
        older = await make_article(
            session, author, category_id=world.id, published_at=now - timedelta(days=3)
        )
        target = await make_article(
            session, author, category_id=world.id, published_at=now - timedelta(days=2)
        )
        newer = await make_article(
            session, author, category_id=world.id, published_at=now - timedelta(days=1)
        )
        elsewhere = await make_article(session, author, category_id=sport.id)
        dropped = [
            f"/api/v1/articles/{target.id}/comments",
            "/api/v1/articles",
            f"/api/v1/articles?category={world.slug}",
        ]
        kept = [
            f"/api/v1/articles/{older.id}",  # its neighbour shows the title, not the count
            f"/api/v1/articles/{newer.id}",
            f"/api/v1/articles/{elsewhere.id}",
            f"/api/v1/articles/{elsewhere.id}/comments",
            f"/api/v1/articles?category={sport.slug}",
            "/api/v1/categories",
            "/api/v1/authors",
            "/feeds/rss",
            "/sitemap.xml",
        ]
        page_path = f"/api/v1/articles/{target.id}"
        await warm(client, page_path, *dropped, *kept)
        posted = await client.post(f"/api/v1/articles/{target.id}/comments", json=COMMENT)
        assert posted.status_code == 201
        assert posted.json()["status"] == "approved"
        for path in dropped:
            response = await client.get(path)
            assert response.headers["x-cache"] == "MISS", path
        # The page shows its comments only as a count: that number is read again (TestRefresh).
        assert (await client.get(page_path)).headers["x-cache"] == "REFRESHED"
        page = (await client.get(f"/api/v1/articles/{target.id}")).json()
        assert page["comment_count"] == 1
        assert (await client.get(f"/api/v1/articles/{target.id}/comments")).json()["total"] == 1
        for path in kept:
            assert await hit(client, path), f"{path} was dropped by an unrelated comment"

    async def test_requests_that_change_nothing_invalidate_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
    ) -> None:
        editor = await make_user(session, role=Role.editor, username="desk")
        token = await make_token(session, editor)
        article = await make_article(session, editor)
        paths = ["/api/v1/articles", f"/api/v1/articles/{article.id}"]
        await warm(client, *paths)
        clock: KeyClock = app.state.cache_clock
        before = clock.now()
        comments = f"/api/v1/articles/{article.id}/comments"
        attempts = [
            # An anonymous write to a token route: the trailing-slash redirect, and a 401.
            client.post("/api/v1/articles/", json={"title": "x"}),
            client.post("/api/v1/articles", json={"title": "x"}),
            # A token holder's invalid write, and one refused for a conflict.
            client.post("/api/v1/articles", json={"title": ""}, headers=bearer(token)),
            client.patch(
                f"/api/v1/articles/{article.id}",
                json={"title": "New"},
                headers={**bearer(token), "If-Match": '"999-x"'},
            ),
            # Comments that are refused, held or caught as spam.
            client.post(comments, json={**COMMENT, "author_email": "not an email"}),
            client.post(comments, json={**COMMENT, "website": "https://spam.example"}),
            client.post("/api/v1/articles/424242/comments", json=COMMENT),
            # A login, and a failed one.
            client.post(
                "/api/v1/auth/token", data={"username": "desk", "password": "wrong password"}
            ),
            client.post(
                "/api/v1/auth/token",
                data={"username": "desk", "password": "correct horse battery"},
            ),
        ]
        statuses = [(await attempt).status_code for attempt in attempts]
        assert statuses == [307, 401, 422, 412, 422, 201, 404, 401, 200]
        assert clock.now() == before, "a request that changed nothing invalidated something"
        for path in paths:
            assert await hit(client, path), path

    async def test_a_held_comment_invalidates_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI, tmp_path: Path
    ) -> None:
        article = await make_article(session, await make_user(session))
        path = f"/api/v1/articles/{article.id}"
        await warm(client, path)
        before = app.state.cache_clock.now()
        # Over the link limit: held for moderation.
        links = " ".join(f"https://x{i}.example" for i in range(5))
        held = await client.post(f"{path}/comments", json={**COMMENT, "content": links})
        assert held.json()["status"] == "pending"
        assert app.state.cache_clock.now() == before
        assert await hit(client, path)

    async def test_a_write_that_fails_after_naming_keys_invalidates_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.editor))
        await make_category(session, name="World", slug="world")
        second = await make_category(session, name="Asia", slug="asia")
        await warm(client, "/api/v1/categories")
        before = app.state.cache_clock.now()
        clash = await client.patch(
            f"/api/v1/categories/{second.id}", json={"slug": "world"}, headers=bearer(token)
        )
        assert clash.status_code == 409
        assert app.state.cache_clock.now() == before
        assert await hit(client, "/api/v1/categories")

    async def test_a_new_article_changes_its_neighbours_pages(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        world = await make_category(session)
        token = await make_token(session, await make_user(session, role=Role.editor))
        latest = await make_article(
            session, author, category_id=world.id, published_at=utcnow() - timedelta(hours=1)
        )
        path = f"/api/v1/articles/{latest.id}"
        await warm(client, path)
        assert (await client.get(path)).json()["next"] is None
        made = await client.post(
            "/api/v1/articles",
            json={"title": "Newest", "status": "published", "category_id": world.id},
            headers=bearer(token),
        )
        assert made.status_code == 201
        assert (await client.get(path)).json()["next"]["title"] == "Newest"
        renamed = await client.patch(
            f"/api/v1/articles/{made.json()['id']}",
            json={"title": "Renamed"},
            headers=bearer(token),
        )
        assert renamed.status_code == 200
        assert (await client.get(path)).json()["next"]["title"] == "Renamed"

    async def test_an_edit_to_the_text_keeps_lists_that_do_not_show_the_article(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.editor))
        world, sport = await make_category(session), await make_category(session)
        edited = await make_article(session, await make_user(session), category_id=world.id)
        elsewhere = await make_article(session, await make_user(session), category_id=sport.id)
        dropped = [
            f"/api/v1/articles/{edited.id}",
            f"/api/v1/articles?category={world.slug}",
            "/api/v1/articles?q=body",
            "/sitemap.xml",
        ]
        kept = [
            f"/api/v1/articles?category={sport.slug}",
            f"/api/v1/articles/{elsewhere.id}",
            "/api/v1/categories",
        ]
        await warm(client, *dropped, *kept)
        fixed = await client.patch(
            f"/api/v1/articles/{edited.id}",
            json={"body": "<p>The corrected body.</p>"},
            headers=bearer(token),
        )
        assert fixed.status_code == 200
        for path in dropped:
            assert (await client.get(path)).headers["x-cache"] == "MISS", path
        for path in kept:
            assert await hit(client, path), f"{path} was dropped by an edit it does not show"

    async def test_renaming_a_category_or_tag_drops_the_pages_showing_it(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.editor))
        world = await make_category(session, name="World")
        vote = await make_tag(session, name="Vote")
        article = await make_article(
            session, await make_user(session), category_id=world.id, tags=[vote.slug]
        )
        other = await make_article(session, await make_user(session))
        path = f"/api/v1/articles/{article.id}"
        await warm(client, path, f"/api/v1/articles/{other.id}")
        await client.patch(
            f"/api/v1/categories/{world.id}", json={"name": "Globe"}, headers=bearer(token)
        )
        await client.patch(
            f"/api/v1/tags/{vote.id}", json={"name": "Ballot"}, headers=bearer(token)
        )
        page = (await client.get(path)).json()
        assert page["category"]["name"] == "Globe"
        assert [t["name"] for t in page["tags"]] == ["Ballot"]
        listed = (await client.get("/api/v1/articles")).json()["items"]
        assert [i["category"]["name"] for i in listed if i["id"] == article.id] == ["Globe"]
        assert await hit(client, f"/api/v1/articles/{other.id}")

    async def test_a_removed_comment_disappears_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        article = await make_article(session, editor)
        path = f"/api/v1/articles/{article.id}/comments"
        page = f"/api/v1/articles/{article.id}"
        made = await client.post(path, json=COMMENT)
        await warm(client, path, page)
        assert (await client.get(path)).json()["total"] == 1
        assert (await client.get(page)).json()["comment_count"] == 1
        removed = await client.delete(
            f"/api/v1/comments/{made.json()['id']}", headers=bearer(token)
        )
        assert removed.status_code == 204, removed.text
        assert (await client.get(path)).json()["total"] == 0
        refreshed = await client.get(page)
        assert (refreshed.headers["x-cache"], refreshed.json()["comment_count"]) == ("REFRESHED", 0)

    async def test_other_workers_invalidations_are_seen(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article_id, path = await cached_then_changed_behind(client, session)
        # Another process on this machine (another worker, the command line) changed it.
        other = KeyClock(app.state.settings.cache_generation_file)
        try:
            other.invalidate([keys.article(article_id)])
        finally:
            other.close()
        assert (await client.get(path)).json()["title"] == "New"

    async def test_an_import_on_the_command_line_drops_every_cached_page(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
    ) -> None:
        article = await make_article(session, await make_user(session))
        paths = ["/api/v1/articles", f"/api/v1/articles/{article.id}", "/api/v1/categories"]
        await warm(client, *paths)
        settings = app.state.settings
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "CACHE_GENERATION_FILE": str(settings.cache_generation_file),
            "LOG_LEVEL": "WARNING",
        }
        wxr = Path(__file__).parent / "fixtures" / "wxr" / "site-1.2.xml"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app", "import-wxr", str(wxr)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for path in paths:
            assert (await client.get(path)).headers["x-cache"] == "MISS", path

    async def test_a_scheduled_article_shows_in_lists_when_its_time_comes(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        await make_article(session, author, title="Already out")
        soon = utcnow() + timedelta(seconds=1.5)
        await make_article(
            session, author, title="Embargoed", status=ArticleStatus.scheduled, published_at=soon
        )
        await warm(client, "/api/v1/articles")
        assert [i["title"] for i in (await client.get("/api/v1/articles")).json()["items"]] == [
            "Already out"
        ]
        titles: list[str] = []
        for _ in range(50):
            await asyncio.sleep(0.2)
            titles = [i["title"] for i in (await client.get("/api/v1/articles")).json()["items"]]
            if "Embargoed" in titles:
                break
        assert titles == ["Embargoed", "Already out"]


class TestRefresh:
    """A comment changes an article's page only in its `comment_count`: the stored page is
    brought up to date by reading that number again, byte for byte what a render gives."""

    async def test_a_comment_refreshes_the_count_in_the_stored_page(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session))
        paths = [
            f"/api/v1/articles/{article.id}",
            f"/api/v1/articles/by-slug/{article.slug}",
            f"/api/v1/articles/by-number/{article.number}",
        ]
        await warm(client, *paths)
        before = {path: (await client.get(path)).headers["etag"] for path in paths}
        posted = await client.post(f"/api/v1/articles/{article.id}/comments", json=COMMENT)
        assert posted.status_code == 201, posted.text
        refreshed = {}
        for path in paths:
            response = await client.get(path, headers={"If-None-Match": before[path]})
            assert response.status_code == 200, f"{path}: the old copy was confirmed"
            assert response.headers["x-cache"] == "REFRESHED", path
            assert response.json()["comment_count"] == 1
            assert response.headers["content-length"] == str(len(response.content))
            refreshed[path] = response
            again = await client.get(path)
            assert again.headers["x-cache"] == "HIT", path
            assert again.content == response.content
        # What a render from the database gives now, with nothing stored.
        app.state.cache_store.clear()
        for path in paths:
            rendered = await client.get(path)
            assert rendered.headers["x-cache"] == "MISS", path
            assert rendered.content == refreshed[path].content, path
            assert rendered.headers["etag"] == refreshed[path].headers["etag"], path
            assert rendered.headers["etag"] != before[path]
            revalidated = await client.get(
                path, headers={"If-None-Match": rendered.headers["etag"]}
            )
            assert revalidated.status_code == 304, path

    async def test_what_is_not_only_a_count_is_rendered_again(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        article = await make_article(session, editor, title="Before")
        page = f"/api/v1/articles/{article.id}"
        # A list of one shows one count too, but the rule is for article pages alone; a
        # page trimmed by `fields` shows no count to refresh.
        others = [f"{page}/comments", "/api/v1/articles", f"{page}?fields=title,comment_status"]
        await warm(client, page, *others)
        assert (await client.post(f"{page}/comments", json=COMMENT)).status_code == 201
        for path in others:
            assert (await client.get(path)).headers["x-cache"] == "MISS", path
        # An edit invalidates the article itself: rendered again, not refreshed.
        await warm(client, page)
        changed = await client.patch(page, json={"title": "After"}, headers=bearer(token))
        assert changed.status_code == 200, changed.text
        again = {**COMMENT, "content": "and again"}
        assert (await client.post(f"{page}/comments", json=again)).status_code == 201
        response = await client.get(page)
        assert response.headers["x-cache"] == "MISS"
        assert (response.json()["title"], response.json()["comment_count"]) == ("After", 2)

    async def test_a_page_no_longer_public_is_not_refreshed(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session))
        path = f"/api/v1/articles/{article.id}"
        await warm(client, path)
        # Unpublished behind the app's back, then a comment counted on another worker.
        await session.execute(
            update(Article).where(Article.id == article.id).values(status=ArticleStatus.draft)
        )
        await session.commit()
        other = KeyClock(app.state.settings.cache_generation_file)
        try:
            other.invalidate([keys.comments(article.id)])
        finally:
            other.close()
        assert (await client.get(path)).status_code == 404


class TestRefreshRules:
    """The refresh, on a one-route app: when it may patch, and when it must render."""

    PATH = "/api/v1/articles/1"

    @staticmethod
    def serve(
        clock: KeyClock, value: Callable[[int], Awaitable[int | None]], **page: Any
    ) -> tuple[FastAPI, dict[str, Any]]:
        state: dict[str, Any] = {"renders": 0, "title": "T", "count": 0, "labels": "", **page}
        api = FastAPI()

        @api.get("/api/v1/articles/{article_id}")
        async def read(article_id: int) -> Response:
            state["renders"] += 1
            body = orjson.dumps(
                {
                    "id": article_id,
                    "title": state["title"],
                    "comment_count": state["count"],
                    **state.get("more", {}),
                }
            )
            labels = f"article:{article_id} comments:{article_id} {state['labels']}".strip()
            etag = state.get("etag") or etag_for(body, 3)
            return Response(body, headers={"Surrogate-Key": labels, "ETag": etag})

        api.add_middleware(
            ResponseCacheMiddleware,
            store=EntryStore(clock, max_bytes=1 << 20, ttl=60),
            routes=RouteTable(api.routes, ("/api/v1/articles",)),
            channel=AlwaysUp(),
            refresher=Refresher("comments:", b'"comment_count":', value, re.compile(r".*/\d+")),
        )
        return api, state

    @pytest.fixture
    def clock(self, tmp_path: Path) -> Iterator[KeyClock]:
        clock = KeyClock(tmp_path / "clock")
        yield clock
        clock.close()

    @staticmethod
    async def reads(api: FastAPI, count: int) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(TestRefreshRules.PATH) for _ in range(count)]

    async def test_the_number_and_etag_follow_without_a_render(self, clock: KeyClock) -> None:
        async def value(article_id: int) -> int:
            return 12

        api, state = self.serve(clock, value, count=7)
        first, second = await self.reads(api, 2)
        clock.invalidate(["comments:1"])
        refreshed, kept = await self.reads(api, 2)
        assert [r.headers["x-cache"] for r in (first, second, refreshed, kept)] == [
            "MISS",
            "HIT",
            "REFRESHED",
            "HIT",
        ]
        assert refreshed.json() == {"id": 1, "title": "T", "comment_count": 12}
        assert refreshed.headers["etag"] == etag_for(refreshed.content, 3)
        assert refreshed.headers["content-length"] == str(len(refreshed.content))
        assert state["renders"] == 1

    async def test_the_field_inside_a_string_is_not_taken_for_it(self, clock: KeyClock) -> None:
        async def value(article_id: int) -> int:
            return 5

        title = 'x","comment_count":1,"y":"'
        api, _ = self.serve(clock, value, title=title)
        await self.reads(api, 1)
        clock.invalidate(["comments:1"])
        (response,) = await self.reads(api, 1)
        assert response.headers["x-cache"] == "REFRESHED"
        assert response.json() == {"id": 1, "title": title, "comment_count": 5}

    async def test_an_edit_landing_during_the_refresh_means_a_render(self, clock: KeyClock) -> None:
        async def value(article_id: int) -> int:
            state["title"] = "Edited"
            clock.invalidate(["article:1"])
            return 1

        api, state = self.serve(clock, value)
        await self.reads(api, 1)
        clock.invalidate(["comments:1"])
        (response,) = await self.reads(api, 1)
        assert response.headers["x-cache"] == "MISS"
        assert response.json()["title"] == "Edited"
        assert state["renders"] == 2

    async def test_a_comment_landing_during_the_refresh_is_not_stored_over(
        self, clock: KeyClock
    ) -> None:
        async def value(article_id: int) -> int:
            clock.invalidate(["comments:1"])  # the number read may predate this one
            return 1

        api, _ = self.serve(clock, value)
        await self.reads(api, 1)
        clock.invalidate(["comments:1"])
        responses = await self.reads(api, 2)
        assert [r.headers["x-cache"] for r in responses] == ["REFRESHED", "REFRESHED"]

    async def test_when_the_page_cannot_be_patched_it_is_rendered(self, clock: KeyClock) -> None:
        async def gone(article_id: int) -> None:
            return None

        async def value(article_id: int) -> int:
            return 1

        # A key sharing the count's slot: an invalidation of it would look like a comment.
        twin = next(
            f"tag:{n}" for n in range(1 << 22) if slot_of(f"tag:{n}") == slot_of("comments:1")
        )
        cases = [
            self.serve(clock, gone),  # the refresher cannot say
            self.serve(clock, value, etag='"made-by-the-route"'),  # an ETag it cannot follow
            self.serve(clock, value, labels=twin),
            self.serve(clock, value, more={"next": {"comment_count": 4}}),  # which one?
        ]
        for api, state in cases:
            await self.reads(api, 1)
            clock.invalidate(["comments:1"])
            (response,) = await self.reads(api, 1)
            assert response.headers["x-cache"] == "MISS", state
            assert state["renders"] == 2, state


class TestByTheClock:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        return cache_settings(tmp_path, comments_close_after_days=1)

    async def test_pages_say_comments_closed_once_they_close(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        now = utcnow()
        own = await make_article(session, author, comments_close_at=now + timedelta(seconds=1.5))
        # COMMENTS_CLOSE_AFTER_DAYS=1: closes a day after publication.
        aged = await make_article(
            session, author, published_at=now - timedelta(days=1) + timedelta(seconds=1.5)
        )
        paths = [f"/api/v1/articles/{own.id}", f"/api/v1/articles/{aged.id}"]
        await warm(client, *paths)
        assert [(await client.get(p)).json()["comments_open"] for p in paths] == [True, True]
        still_open = paths
        for _ in range(50):
            await asyncio.sleep(0.2)
            still_open = [p for p in paths if (await client.get(p)).json()["comments_open"]]
            if not still_open:
                break
        assert still_open == []


class TestKeys:
    async def test_unknown_parameters_are_left_out_of_the_key_and_the_links(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        for _ in range(3):
            await make_article(session, author)
        await warm(client, "/api/v1/articles?per_page=1")
        entries = len(app.state.cache_store.entries)
        for n in range(20):
            response = await client.get(f"/api/v1/articles?utm_source=x{n}&per_page=1&_={n}")
            assert response.headers["x-cache"] == "HIT"
            assert "utm_source" not in response.headers["link"]
        assert len(app.state.cache_store.entries) == entries
        # The declared parameters are keyed in a canonical order.
        first = await client.get("/api/v1/articles?page=2&per_page=1")
        assert first.headers["x-cache"] == "MISS"
        assert await hit(client, "/api/v1/articles?per_page=1&page=2")


class TestMemory:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        return cache_settings(tmp_path, response_cache_max_mb=1, response_cache_ttl=1)

    async def test_memory_is_bounded_in_bytes_and_expired_entries_free_it(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        big = "<p>" + "word " * 40_000 + "</p>"  # some 200 KB a page
        made = [await make_article(session, author, body=big) for _ in range(8)]
        store = app.state.cache_store
        for article in made:
            assert (await client.get(f"/api/v1/articles/{article.id}")).status_code == 200
        assert 0 < store.bytes <= 1 << 20
        assert 0 < len(store.entries) < len(made)
        # With no request coming, the app's sweeper frees expired entries (every 1 s here).
        for _ in range(40):
            if not store.entries:
                break
            await asyncio.sleep(0.1)
        assert store.bytes == 0
        assert len(store.entries) == 0


class TestHostileHeaders:
    HOSTILE: ClassVar[dict[str, str]] = {
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "gopher",
    }

    async def _fill_then_read(
        self, app: FastAPI, attacker: tuple[str, int], session: AsyncSession
    ) -> tuple[httpx.Response, httpx.Response]:
        author = await make_user(session)
        for _ in range(3):
            await make_article(session, author)
        async with _client(app, peer=attacker) as evil:
            poisoned = await evil.get("/api/v1/articles?per_page=1", headers=self.HOSTILE)
        async with _client(app) as reader:
            served = await reader.get("/api/v1/articles?per_page=1")
        return poisoned, served

    async def test_from_the_internet_links_are_relative_and_stored(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        poisoned, served = await self._fill_then_read(app, ("198.51.100.9", 5000), session)
        assert "evil" not in poisoned.headers["link"]
        assert poisoned.headers["link"].startswith("</api/v1/articles?")
        assert served.headers["x-cache"] == "HIT"
        assert "evil" not in served.headers["link"]

    async def test_from_a_trusted_proxy_links_follow_it_but_are_never_stored(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        poisoned, served = await self._fill_then_read(app, ("127.0.0.1", 5000), session)
        assert "<http://evil.example/api/v1/articles?" in poisoned.headers["link"]
        assert "X-Forwarded-Host" in poisoned.headers["vary"]
        assert served.headers["x-cache"] == "MISS"
        assert "evil" not in served.headers["link"]
        assert "evil" not in str(served.headers)

    async def test_redirects_never_take_their_address_from_the_request(
        self, client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.editor))
        article = await make_article(session, await make_user(session), title="First title")
        await client.patch(
            f"/api/v1/articles/{article.id}", json={"slug": "second"}, headers=bearer(token)
        )
        async with _client(app, peer=("198.51.100.9", 5000)) as evil:
            old = await evil.get(
                f"/api/v1/articles/by-slug/{article.slug}?fields=id&x=<b>", headers=self.HOSTILE
            )
            slash = await evil.post("/api/v1/articles/", headers=self.HOSTILE)
        assert old.status_code == 301
        assert old.headers["location"] == "/api/v1/articles/by-slug/second?fields=id"
        assert slash.status_code == 307
        assert slash.headers["location"] == "/api/v1/articles"


class TestPublicBaseUrl:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        return cache_settings(tmp_path, public_base_url="https://api.news.example/")

    async def test_absolute_addresses_come_from_the_setting_alone(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        for _ in range(3):
            await make_article(session, author)
        async with _client(app, peer=("127.0.0.1", 1)) as proxy:
            response = await proxy.get(
                "/api/v1/articles?per_page=1", headers=TestHostileHeaders.HOSTILE
            )
            slash = await proxy.get("/api/v1/articles/", headers=TestHostileHeaders.HOSTILE)
        assert response.headers["link"].startswith("<https://api.news.example/api/v1/articles?")
        assert "X-Forwarded-Host" not in response.headers.get("vary", "")
        assert slash.headers["location"] == "https://api.news.example/api/v1/articles"
        async with _client(app) as reader:
            assert await hit(reader, "/api/v1/articles?per_page=1")


@pytest.mark.postgres_only
class TestAcrossMachines:
    """Two instances on one PostgreSQL database, each with its own machine clock: what one
    writes, the other stops serving (through LISTEN/NOTIFY)."""

    async def test_a_write_on_one_instance_is_seen_by_the_other(
        self, app: FastAPI, database_url: str, tmp_path: Path
    ) -> None:
        # (`app` empties the tables afterwards.)
        first = create_app(make_settings(database_url, **cache_settings(tmp_path / "a")))
        second = create_app(make_settings(database_url, **cache_settings(tmp_path / "b")))
        async with LifespanManager(first), LifespanManager(second):
            assert first.state.cache_clock.origin != second.state.cache_clock.origin
            async with first.state.sessionmaker() as session:
                editor = await make_user(session, role=Role.editor)
                token = await make_token(session, editor)
                article = await make_article(session, editor, title="Old")
            # Let the notifications of these writes reach the other instance first.
            await asyncio.sleep(0.5)
            path = f"/api/v1/articles/{article.id}"
            async with _client(first) as a, _client(second) as b:
                await warm(b, path)
                changed = await a.patch(path, json={"title": "New"}, headers=bearer(token))
                assert changed.status_code == 200
                seen = ""
                for _ in range(50):
                    seen = (await b.get(path)).json()["title"]
                    if seen == "New":
                        break
                    await asyncio.sleep(0.02)
                assert seen == "New"
                assert second.state.cache_listener.heard >= 1

    async def test_an_instance_that_cannot_hear_stops_serving_from_its_cache(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, path = await cached_then_changed_behind(client, session)
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "application_name = 'newsroom-cache-listener' AND datname = current_database()"
            )
        )
        await session.commit()
        listener = app.state.cache_listener
        for _ in range(100):
            if not listener.up:
                break
            await asyncio.sleep(0.02)
        # Another machine's write could have been missed meanwhile: the cache is bypassed.
        bypassed = 0
        while not listener.up:
            bypassed += 1
            response = await client.get(path)
            assert response.json()["title"] == "New"
            assert "x-cache" not in response.headers
            await asyncio.sleep(0.1)
        assert bypassed >= 1, "the channel never went down"
        # Back, and everything from before is gone: it is filled afresh.
        assert (await client.get(path)).headers["x-cache"] == "MISS"
        assert await hit(client, path)


@pytest.mark.postgres_only
class TestTelling:
    """What one machine's writes tell the others, on the channel's own connection."""

    @staticmethod
    async def _until(condition: Any, what: str) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never: {what}")

    async def _pair(self, database_url: str, tmp_path: Path) -> tuple[Listener, Listener]:
        pair = []
        for name in ("a", "b"):
            listener = Listener(database_url, KeyClock(tmp_path / name), connect_timeout=5)
            self._tasks.append(asyncio.create_task(listener.run()))
            assert await listener.wait_first()
            pair.append(listener)
        return pair[0], pair[1]

    @pytest.fixture(autouse=True)
    async def _stop(self) -> Any:
        self._tasks: list[asyncio.Task[None]] = []
        yield
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def test_writes_committed_together_go_out_as_one_notification(
        self, database_url: str, tmp_path: Path
    ) -> None:
        a, b = await self._pair(database_url, tmp_path)
        since = b.clock.now()
        for article_id in (1, 2, 3):
            a.tell({keys.article(article_id), keys.comments(article_id)})
        await self._until(lambda: b.heard == 1, "the other machine hears")
        for article_id in (1, 2, 3):
            assert not b.clock.valid([slot_of(keys.comments(article_id))], since)
        assert b.clock.valid([slot_of(keys.article(4))], since)
        assert a.told == 1

    async def test_keys_told_while_the_channel_is_down_go_out_once_it_is_back(
        self, database_url: str, tmp_path: Path, session: AsyncSession
    ) -> None:
        a, b = await self._pair(database_url, tmp_path)
        await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": a.server_pid})
        await session.commit()
        await self._until(lambda: not a.up, "the channel goes down")
        since = b.clock.now()
        a.tell({keys.article(7)})
        await self._until(lambda: a.up, "the channel comes back")
        await self._until(lambda: b.heard == 1, "the other machine hears")
        assert not b.clock.valid([slot_of(keys.article(7))], since)


def _client(app: FastAPI, peer: tuple[str, int] = ("203.0.113.7", 40000)) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestKeysToTheCdn:
    """A response's keys go out in the header the configured CDN reads, and in no other."""

    @pytest.fixture(params=["varnish", "cloudflare"])
    def settings_overrides(self, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
        cdn = {
            "varnish": {"cdn_purge": "varnish", "cdn_purge_urls": "http://127.0.0.1:9"},
            "cloudflare": {
                "cdn_purge": "cloudflare",
                "cloudflare_zone_id": "zone",
                "cloudflare_api_token": "t",
            },
        }[request.param]
        return cache_settings(tmp_path, **cdn)

    async def test_only_the_cdns_header_carries_the_keys(
        self, app: Any, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session))
        for _ in range(2):  # filled, then a hit: both answers alike
            response = await client.get(f"/api/v1/articles/{article.id}")
            assert response.status_code == 200, response.text
            if app.state.settings.cdn_purge == "varnish":
                labels = keys.parse(response.headers["surrogate-key"])
                assert "cache-tag" not in response.headers
            else:
                labels = response.headers["cache-tag"].split(",")
                assert "surrogate-key" not in response.headers
            assert {keys.ALL, keys.article(article.id)} <= set(labels)
