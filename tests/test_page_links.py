"""`Link` on every paged route: a client that keeps following `rel="next"` walks the list once,
in the style its first request used, and stops on the last page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.models import Role
from tests.factories import (
    bearer,
    make_article,
    make_category,
    make_tag,
    make_token,
    make_user,
)

pytestmark = pytest.mark.usefixtures("site")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"comment_moderation": "none", "comment_flood_seconds": 0, "comment_rate_limit": ""}


ITEMS = 5


def links(response: httpx.Response) -> dict[str, str]:
    found = {}
    for part in response.headers["link"].split(", "):
        target, _, rel = part.partition("; ")
        found[rel.removeprefix('rel="').removesuffix('"')] = target.strip("<>")
    return found


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(url).query)


async def walk(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[list[Any], list[dict[str, list[str]]]]:
    """Follow `next` from `url`; the ids seen and the query of every link followed."""
    seen: list[Any] = []
    followed: list[dict[str, list[str]]] = []
    for _ in range(ITEMS * 2 + 2):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        seen += [item.get("id", item.get("slug")) for item in response.json()["items"]]
        following = links(response).get("next")
        if following is None:
            return seen, followed
        followed.append(query_of(following))
        url = following
    raise AssertionError(f"following next from {url} never ended: {followed}")


@pytest.fixture
async def site(session: AsyncSession) -> dict[str, Any]:
    admin = await make_user(session, role=Role.admin)
    token = await make_token(session, admin)
    authors = [await make_user(session, role=Role.author) for _ in range(ITEMS - 1)]
    articles = [await make_article(session, user) for user in [admin, *authors]]
    for _ in range(ITEMS):
        await make_category(session)
        await make_tag(session)
        await make_token(session, admin)
    return {"token": token, "article": articles[0]}


ROUTES = [
    "/api/v1/articles",
    "/api/v1/categories",
    "/api/v1/tags",
    "/api/v1/authors",
    "/api/v1/users",
    "/api/v1/tokens",
]


@pytest.mark.parametrize("path", ROUTES)
async def test_following_next_by_page_visits_every_item_once_and_stops(
    client: httpx.AsyncClient, site: dict[str, Any], path: str
) -> None:
    headers = bearer(site["token"])
    everything = (await client.get(path, params={"per_page": 100}, headers=headers)).json()
    assert everything["total"] >= ITEMS
    seen, followed = await walk(client, f"{path}?page=1&per_page=2", headers)
    assert sorted(seen) == sorted(item.get("id", item.get("slug")) for item in everything["items"])
    assert len(seen) == len(set(seen))
    assert followed, "more than one page"
    assert all("page" in q and "cursor" not in q for q in followed)
    last = await client.get(
        path, params={"page": -(-everything["total"] // 2), "per_page": 2}, headers=headers
    )
    assert "next" not in links(last)
    assert "prev" in links(last)


async def test_following_next_by_cursor_stays_on_cursors_and_stops(
    client: httpx.AsyncClient,
) -> None:
    seen, followed = await walk(client, "/api/v1/articles?per_page=2", {})
    assert len(seen) == ITEMS == len(set(seen))
    assert [set(q) for q in followed] == [{"cursor", "per_page"}] * 2
    # The last cursor page has no next, and no page links that would start another walk.
    last = await client.get(
        "/api/v1/articles", params={"per_page": 2, "cursor": followed[-1]["cursor"][0]}
    )
    assert last.json()["next_cursor"] is None
    assert set(links(last)) == {"first"}


async def test_a_page_request_gets_page_links_even_where_cursors_exist(
    client: httpx.AsyncClient,
) -> None:
    second = await client.get("/api/v1/articles", params={"page": 2, "per_page": 2})
    assert second.json()["next_cursor"] is not None
    found = links(second)
    assert query_of(found["next"])["page"] == ["3"]
    assert query_of(found["prev"])["page"] == ["1"]
    assert query_of(found["last"])["page"] == ["3"]


async def test_comment_pages_follow_the_same_rule(
    client: httpx.AsyncClient, session: AsyncSession, site: dict[str, Any]
) -> None:
    article = site["article"]
    for n in range(ITEMS):
        posted = await client.post(
            f"/api/v1/articles/{article.id}/comments",
            json={
                "author_name": f"Reader {n}",
                "author_email": f"reader{n}@example.com",
                "content": f"Comment number {n} on the story.",
            },
            headers=bearer(site["token"]),
        )
        assert posted.status_code == 201, posted.text
    seen, followed = await walk(client, f"/api/v1/articles/{article.id}/comments?per_page=2", {})
    assert len(seen) == ITEMS == len(set(seen))
    assert len(followed) == 2


@pytest.mark.parametrize("path", [*ROUTES, "/api/v1/comments", "/api/v1/webhooks"])
async def test_bad_paging_names_each_field_once(
    client: httpx.AsyncClient, site: dict[str, Any], path: str
) -> None:
    response = await client.get(
        path, params={"per_page": 101, "page": 0}, headers=bearer(site["token"])
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert sorted(e["field"] for e in errors) == ["page", "per_page"]
