"""`/metrics`: requests and latency by route template and status (never a raw path), the
database pool, and the outcomes of comment posts."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user

ARTICLE = "/api/v1/articles/{article_id}"
COMMENTS = "/api/v1/articles/{article_id}/comments"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "comment_moderation": "known",
        "comment_flood_seconds": 0,
        "comment_rate_limit": "",
        "comment_blocklist_words": ["casino"],
    }


@pytest.fixture
async def article(session: AsyncSession) -> Article:
    return await make_article(session, await make_user(session, role=Role.author))


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def reply(email: str, content: str = "A thoughtful reply.") -> dict[str, str]:
    return {"author_name": "Reader", "author_email": email, "content": content}


class TestRequests:
    async def test_counted_and_timed_by_route_template_and_status(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        before = await scrape(client)
        assert (await client.get(f"/api/v1/articles/{article.id}")).status_code == 200
        assert (await client.get("/api/v1/articles/999999")).status_code == 404
        assert (await client.get("/no/such/place/42")).status_code == 404
        after = await scrape(client)

        ok = {"method": "GET", "route": ARTICLE, "status": "200"}
        missing = {"method": "GET", "route": ARTICLE, "status": "404"}
        for labels in (ok, missing):
            assert value(after, "http_requests_total", **labels) == (
                value(before, "http_requests_total", **labels) + 1
            )
            assert value(after, "http_request_duration_seconds_count", **labels) == (
                value(before, "http_request_duration_seconds_count", **labels) + 1
            )
            inf = {**labels, "le": "+Inf"}
            assert value(after, "http_request_duration_seconds_bucket", **inf) >= 1
        unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
        assert value(after, "http_requests_total", **unmatched) == (
            value(before, "http_requests_total", **unmatched) + 1
        )

    async def test_no_raw_ids_in_labels(self, client: httpx.AsyncClient, article: Article) -> None:
        await client.get(f"/api/v1/articles/{article.id}")
        await client.get(f"/api/v1/articles/{article.id}/comments")
        samples = await scrape(client)
        routes = {dict(labels).get("route") for _, labels in samples} - {None}
        assert ARTICLE in routes
        assert COMMENTS in routes
        for route in routes:
            assert not re.search(r"/\d+(/|$)", str(route)), route

    async def test_metrics_is_not_in_the_openapi_document(self, client: httpx.AsyncClient) -> None:
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_pool_gauges_are_exported(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    assert ("db_pool_size", frozenset()) in samples
    assert ("db_pool_checked_out", frozenset()) in samples
    assert value(samples, "db_pool_size") >= 1


async def test_comment_outcomes_are_counted(
    client: httpx.AsyncClient, session: AsyncSession, article: Article
) -> None:
    before = await scrape(client)
    url = f"/api/v1/articles/{article.id}/comments"
    first = await client.post(url, json=reply("known@example.com"))
    assert first.json()["status"] == "pending"
    moderator = await make_token(session, await make_user(session, role=Role.editor))
    approve = await client.patch(
        f"/api/v1/comments/{first.json()['id']}",
        json={"status": "approved"},
        headers=bearer(moderator),
    )
    assert approve.status_code == 200
    second = await client.post(url, json=reply("known@example.com", "Another reply."))
    assert second.json()["status"] == "approved"
    spam = await client.post(url, json=reply("new@example.com", "Cheap casino chips."))
    assert spam.status_code == 201
    assert (await client.post(url, json={"author_name": "x"})).status_code == 422
    assert (
        await client.post("/api/v1/articles/999999/comments", json=reply("a@example.com"))
    ).status_code == 404
    refused = await client.post(url, content=b"x", headers={"content-type": "text/plain"})
    assert refused.status_code == 415
    after = await scrape(client)

    def moved(outcome: str) -> float:
        return value(after, "comments_posted_total", outcome=outcome) - value(
            before, "comments_posted_total", outcome=outcome
        )

    assert moved("pending") == 1
    assert moved("approved") == 1
    assert moved("spam") == 1
    assert moved("rejected") == 3
