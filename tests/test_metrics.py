"""`/metrics`: requests and latency by route template and status (never a raw path), the
database pool, and the outcomes of comment posts; for a token with metrics:read only."""

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


@pytest.fixture
async def scraper(session: AsyncSession) -> str:
    """Prometheus's token: an admin's, narrowed to metrics:read."""
    admin = await make_user(session, role=Role.admin)
    return await make_token(session, admin, scopes=["metrics:read"])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, token: str) -> Samples:
    response = await client.get("/metrics", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "no-store" in response.headers["cache-control"]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def reply(email: str, content: str = "A thoughtful reply.") -> dict[str, str]:
    return {"author_name": "Reader", "author_email": email, "content": content}


class TestRequests:
    async def test_counted_and_timed_by_route_template_and_status(
        self, client: httpx.AsyncClient, scraper: str, article: Article
    ) -> None:
        before = await scrape(client, scraper)
        assert (await client.get(f"/api/v1/articles/{article.id}")).status_code == 200
        assert (await client.get("/api/v1/articles/999999")).status_code == 404
        assert (await client.get("/no/such/place/42")).status_code == 404
        after = await scrape(client, scraper)

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

    async def test_no_raw_ids_in_labels(
        self, client: httpx.AsyncClient, scraper: str, article: Article
    ) -> None:
        await client.get(f"/api/v1/articles/{article.id}")
        await client.get(f"/api/v1/articles/{article.id}/comments")
        samples = await scrape(client, scraper)
        routes = {dict(labels).get("route") for _, labels in samples} - {None}
        assert ARTICLE in routes
        assert COMMENTS in routes
        for route in routes:
            assert not re.search(r"/\d+(/|$)", str(route)), route

    async def test_metrics_is_not_in_the_openapi_document(self, client: httpx.AsyncClient) -> None:
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_pool_gauges_are_exported(client: httpx.AsyncClient, scraper: str) -> None:
    samples = await scrape(client, scraper)
    assert ("db_pool_size", frozenset()) in samples
    assert ("db_pool_checked_out", frozenset()) in samples
    assert value(samples, "db_pool_size") >= 1


async def test_comment_outcomes_are_counted(
    client: httpx.AsyncClient, session: AsyncSession, article: Article, scraper: str
) -> None:
    before = await scrape(client, scraper)
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
    after = await scrape(client, scraper)

    def moved(outcome: str) -> float:
        return value(after, "comments_posted_total", outcome=outcome) - value(
            before, "comments_posted_total", outcome=outcome
        )

    assert moved("pending") == 1
    assert moved("approved") == 1
    assert moved("spam") == 1
    assert moved("rejected") == 3


class TestAccess:
    async def test_no_token_is_a_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "comments_posted_total" not in response.text

    async def test_a_token_without_metrics_read_is_a_403(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        for token in (
            await make_token(session, await make_user(session, role=Role.editor)),
            await make_token(session, admin, scopes=["comments:moderate"]),
        ):
            response = await client.get("/metrics", headers=bearer(token))
            assert response.status_code == 403
            assert "metrics:read" in response.json()["detail"]

    async def test_admins_have_metrics_read(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        token = await make_token(session, await make_user(session, role=Role.admin))
        assert (await client.get("/metrics", headers=bearer(token))).status_code == 200


class TestPublicOnAPrivateNetwork:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"metrics_public": True}

    async def test_metrics_public_serves_without_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "comments_posted_total" in response.text
