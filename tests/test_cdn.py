"""CDN purges: the keys a committed write invalidated leave through the outbox, merged,
in the shape Fastly's and Cloudflare's APIs take, and retried until they are taken."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import keys
from app.core.config import Settings
from app.core.db import utcnow
from app.importer.service import import_file
from app.outbox import worker
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus
from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user
from tests.test_webhooks import Receiver, Trickler

WXR = Path(__file__).parent / "fixtures" / "wxr" / "site-1.2.xml"
COMMENT = {"author_name": "Reader", "author_email": "r@example.com", "content": "hello"}


@pytest.fixture
async def cdn() -> AsyncIterator[Receiver]:
    made = Receiver()
    await made.start()
    yield made
    await made.stop()


def _base(receiver: Receiver) -> str:
    return receiver.url.removesuffix("/hooks/newsroom")


async def purges(session: AsyncSession) -> list[Delivery]:
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.kind == DeliveryKind.purge)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def deliver(app: FastAPI, at: Any = None) -> int:
    return await worker.process_due(app.state.sessionmaker, app.state.settings, now=at)


class TestFastly:
    @pytest.fixture
    def settings_overrides(self, cdn: Receiver, tmp_path: Path) -> dict[str, Any]:
        return {
            "cdn_purge": "fastly",
            "fastly_service_id": "SVC1",
            "fastly_api_token": "fastly-secret",
            "fastly_api_url": _base(cdn),
            "comment_moderation": "none",
            "comment_flood_seconds": 0,
        }

    async def test_a_comment_purges_its_keys_once_committed(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, cdn: Receiver
    ) -> None:
        article = await make_article(session, await make_user(session))
        await deliver(app)  # the article's own purge
        cdn.requests.clear()
        posted = await client.post(f"/api/v1/articles/{article.id}/comments", json=COMMENT)
        assert posted.status_code == 201
        assert [p.payload for p in await purges(session)] == [keys.comments(article.id)]
        assert await deliver(app) == 1
        [sent] = cdn.requests
        assert sent.path == "/service/SVC1/purge"
        assert sent.headers["fastly-key"] == "fastly-secret"
        assert sent.headers["surrogate-key"] == keys.comments(article.id)
        assert await purges(session) == [], "a purge done is not kept"

    async def test_nothing_is_queued_for_requests_that_change_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        article = await make_article(session, await make_user(session))
        before = len(await purges(session))
        path = f"/api/v1/articles/{article.id}/comments"
        await client.post(path, json={**COMMENT, "website": "https://spam.example"})
        await client.post(path, json={**COMMENT, "author_email": "nope"})
        await client.get(f"/api/v1/articles/{article.id}")
        assert len(await purges(session)) == before

    async def test_purges_due_together_go_out_as_one_request(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, cdn: Receiver
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.editor))
        first = await make_article(session, await make_user(session))
        second = await make_article(session, await make_user(session))
        for article in (first, second):
            changed = await client.patch(
                f"/api/v1/articles/{article.id}", json={"kicker": "New"}, headers=bearer(token)
            )
            assert changed.status_code == 200
        await deliver(app)
        assert len(cdn.requests) == 1
        sent = set(cdn.requests[0].headers["surrogate-key"].split())
        assert {keys.article(first.id), keys.article(second.id), keys.ARTICLES} <= sent

    async def test_a_refused_purge_is_tried_again(
        self, app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, cdn: Receiver
    ) -> None:
        article = await make_article(session, await make_user(session))
        await deliver(app)
        cdn.script = [503]
        await client.post(f"/api/v1/articles/{article.id}/comments", json=COMMENT)
        await deliver(app)
        [waiting] = await purges(session)
        assert waiting.status == DeliveryStatus.failed
        assert waiting.last_status_code == 503
        assert waiting.next_attempt_at is not None
        await deliver(app, at=utcnow() + timedelta(minutes=5))
        assert await purges(session) == []
        assert [r.headers["surrogate-key"] for r in cdn.requests[-2:]] == [
            keys.comments(article.id)
        ] * 2


class TestSlowTarget:
    @pytest.fixture
    async def trickler(self) -> AsyncIterator[Trickler]:
        async with Trickler() as made:
            yield made

    @pytest.fixture
    def settings_overrides(self, trickler: Trickler) -> dict[str, Any]:
        return {
            "cdn_purge": "fastly",
            "fastly_service_id": "SVC1",
            "fastly_api_token": "fastly-secret",
            "fastly_api_url": _base(trickler),
            "webhook_timeout_seconds": 0.5,
            "webhook_deadline_seconds": 1.0,
        }

    async def test_a_target_that_trickles_is_given_the_deadline_then_retried(
        self, app: FastAPI, session: AsyncSession, trickler: Trickler
    ) -> None:
        await make_article(session, await make_user(session))
        started = time.monotonic()
        await deliver(app)
        took = time.monotonic() - started
        assert len(trickler.requests) == 1
        assert 0.9 <= took < 4, f"the purge held the worker {took:.2f} s"
        [waiting] = await purges(session)
        assert waiting.status == DeliveryStatus.failed
        assert waiting.last_error == "The purge took longer than 1 s."
        assert waiting.next_attempt_at is not None


class TestCloudflare:
    @pytest.fixture
    def settings_overrides(self, cdn: Receiver) -> dict[str, Any]:
        return {
            "cdn_purge": "cloudflare",
            "cloudflare_zone_id": "ZONE9",
            "cloudflare_api_token": "cf-secret",
            "cloudflare_api_url": _base(cdn) + "/client/v4",
        }

    async def test_keys_go_out_as_cache_tags(
        self, app: FastAPI, session: AsyncSession, cdn: Receiver
    ) -> None:
        article = await make_article(session, await make_user(session))
        await deliver(app)
        [sent] = cdn.requests
        assert sent.path == "/client/v4/zones/ZONE9/purge_cache"
        assert sent.headers["authorization"] == "Bearer cf-secret"
        tags = json.loads(sent.body)["tags"]
        assert {keys.article(article.id), keys.LISTINGS, keys.ARTICLES} <= set(tags)

    async def test_an_import_purges_everything(
        self, app: FastAPI, session: AsyncSession, cdn: Receiver
    ) -> None:
        await import_file(session, WXR, zone=ZoneInfo("UTC"))
        await session.commit()
        await deliver(app)
        [sent] = cdn.requests
        assert json.loads(sent.body) == {"purge_everything": True}


def test_a_purge_target_must_be_complete() -> None:
    for incomplete in (
        {"cdn_purge": "varnish"},
        {"cdn_purge": "fastly", "fastly_service_id": "x"},
        {"cdn_purge": "cloudflare", "cloudflare_api_token": "t"},
    ):
        with pytest.raises(ValidationError):
            Settings(**incomplete)
    assert Settings(
        cdn_purge="varnish", cdn_purge_urls="http://a:6081, http://b:6081"
    ).cdn_purge_urls == [
        "http://a:6081",
        "http://b:6081",
    ]


async def test_no_purge_is_queued_without_a_cdn(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    article = await make_article(session, await make_user(session))
    await client.get(f"/api/v1/articles/{article.id}")
    count = await session.scalar(select(func.count()).select_from(Delivery))
    assert count == 0


class TestPurgedCachesKeepLonger:
    @pytest.fixture
    def settings_overrides(self, cdn: Receiver) -> dict[str, Any]:
        return {
            "cdn_purge": "varnish",
            "cdn_purge_urls": _base(cdn),
            "cdn_max_age": 3600,
        }

    async def test_surrogates_may_keep_a_read_until_it_is_purged(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        article = await make_article(session, editor)
        public = await client.get(f"/api/v1/articles/{article.id}")
        assert public.headers["surrogate-control"] == "max-age=3600"
        assert public.headers["cdn-cache-control"] == "max-age=3600"
        assert public.headers["cache-control"].startswith("public, max-age=60")
        mine = await client.get(
            f"/api/v1/articles/{article.id}", headers=bearer(await make_token(session, editor))
        )
        assert "surrogate-control" not in mine.headers
        assert "cdn-cache-control" not in mine.headers
