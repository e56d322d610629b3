"""The public listing: filters and their combinations, both pagination styles, search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import ArticleStatus
from app.categories.models import Category
from app.core.db import utcnow
from app.users.models import Role
from tests.factories import bearer, make_article, make_tag, make_token, make_user
from tests.support import assert_problem

API = "/api/v1/articles"


async def titles(client: httpx.AsyncClient, query: str) -> list[str]:
    response = await client.get(f"{API}?{query}")
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


@pytest.fixture
async def newsroom(session: AsyncSession) -> dict[str, Any]:
    """World > Asia > Afghanistan, Sport; five articles an hour apart, newest first:
    e (Sport), d (Afghanistan+Sport), c (Asia), b (World), a (Afghanistan, by Robin)."""
    world = Category(name="World", slug="world")
    sport = Category(name="Sport", slug="sport")
    session.add_all([world, sport])
    await session.flush()
    asia = Category(name="Asia", slug="asia", parent_id=world.id)
    session.add(asia)
    await session.flush()
    afghanistan = Category(name="Afghanistan", slug="afghanistan", parent_id=asia.id)
    session.add(afghanistan)
    await session.commit()
    kim = await make_user(session, role=Role.author, display_name="Kim Lee")
    robin = await make_user(session, role=Role.author, display_name="Robin Roe")
    base = utcnow() - timedelta(days=1)
    spec = [
        ("a", robin, afghanistan, [], ["peace"], 0),
        ("b", kim, world, [], ["peace", "un"], 1),
        ("c", kim, asia, [], ["un"], 2),
        ("d", kim, afghanistan, [sport.id], [], 3),
        ("e", kim, sport, [], ["peace"], 4),
    ]
    made = {}
    for title, author, cat, extra, tags, hours in spec:
        made[title] = await make_article(
            session,
            author,
            title=title,
            category_id=cat.id,
            category_ids=extra,
            tags=tags,
            published_at=base + timedelta(hours=hours),
        )
    return made


class TestFilters:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["e", "d", "c", "b", "a"]),
            ("category=asia", ["d", "c", "a"]),
            ("category=world", ["d", "c", "b", "a"]),
            ("category=afghanistan&category=sport", ["e", "d", "a"]),
            ("category_all=afghanistan&category_all=sport", ["d"]),
            ("category_exclude=asia", ["e", "b"]),
            ("category=world&category_exclude=sport", ["c", "b", "a"]),
            ("tag=un", ["c", "b"]),
            ("tag=un&tag=peace", ["e", "c", "b", "a"]),
            ("tag_all=un&tag_all=peace", ["b"]),
            ("tag_exclude=peace", ["d", "c"]),
            ("author=robin-roe", ["a"]),
            ("author=kim-lee&tag=peace", ["e", "b"]),
            ("category=asia&tag=peace&author=robin-roe", ["a"]),
            ("order=published_at", ["a", "b", "c", "d", "e"]),
            ("order=title&category=asia", ["a", "c", "d"]),
        ],
    )
    async def test_filters_and_their_combinations(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any], query: str, expected: list[str]
    ) -> None:
        assert await titles(client, query) == expected

    @pytest.mark.parametrize(
        "query",
        [
            "category=nowhere",
            "category=asia&category=nowhere",
            "category_all=nowhere",
            "category_exclude=nowhere",
            "tag=nothing",
            "tag=un&tag=nothing",
            "tag_all=nothing",
            "tag_exclude=nothing",
            "author=nobody",
        ],
    )
    async def test_a_filter_naming_what_does_not_exist_is_a_404(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any], query: str
    ) -> None:
        field, _, slug = query.split("&")[-1].partition("=")
        problem = assert_problem(await client.get(f"{API}?{query}"), 404)
        assert problem["errors"][0] == {**problem["errors"][0], "field": field, "location": "query"}
        assert slug in problem["detail"]
        # The feeds follow the same rule.
        if field in ("category", "tag"):
            assert (await client.get(f"/feeds/rss?{field}={slug}")).status_code == 404

    async def test_a_name_made_after_a_404_is_found_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession, newsroom: dict[str, Any]
    ) -> None:
        assert (await client.get(f"{API}?tag=later")).status_code == 404
        await make_tag(session, name="Later")  # no article yet: the listing generation stays
        found = await client.get(f"{API}?tag=later")
        assert found.status_code == 200
        assert found.json()["total"] == 0
        # Someone with no public article is no author to filter by.
        await make_user(session, display_name="Quiet Writer")
        assert (await client.get(f"{API}?author=quiet-writer")).status_code == 404

    async def test_number_filter(self, client: httpx.AsyncClient, newsroom: dict[str, Any]) -> None:
        assert await titles(client, f"number={newsroom['c'].number}") == ["c"]

    async def test_after_and_before(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any]
    ) -> None:
        b_time = newsroom["b"].published_at.isoformat()
        d_time = newsroom["d"].published_at.isoformat()
        params = httpx.QueryParams({"after": b_time, "before": d_time})
        assert await titles(client, str(params)) == ["c"]

    async def test_updated_order(
        self, client: httpx.AsyncClient, session: AsyncSession, newsroom: dict[str, Any]
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        await client.patch(f"{API}/{newsroom['b'].id}", json={"byline": "x"}, headers=bearer(token))
        assert (await titles(client, "order=-updated_at"))[0] == "b"

    async def test_unknown_order_is_a_422(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{API}?order=random")
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "order"


class TestDateOnTheSiteClock:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"site_timezone": "Asia/Kabul"}

    async def test_date_means_that_day_on_the_sites_clock(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        # The seed article: 24 November 2017, 12:53 pm Kabul time (UTC+4:30) = 08:23 UTC.
        await make_article(
            session, author, title="seed", published_at=datetime(2017, 11, 24, 8, 23, tzinfo=UTC)
        )
        # 23:00 UTC on the 23rd is already 03:30 on the 24th in Kabul.
        await make_article(
            session, author, title="early", published_at=datetime(2017, 11, 23, 20, 0, tzinfo=UTC)
        )
        # 20:00 UTC on the 24th is 00:30 on the 25th in Kabul.
        await make_article(
            session, author, title="late", published_at=datetime(2017, 11, 24, 20, 0, tzinfo=UTC)
        )
        assert await titles(client, "date=2017-11-24") == ["seed", "early"]
        assert await titles(client, "after=2017-11-24&before=2017-11-25") == ["seed", "early"]
        bad = await client.get(f"{API}?date=24/11/2017")
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "date"


class TestPagination:
    async def test_page_envelope_and_link_header(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any]
    ) -> None:
        response = await client.get(f"{API}?per_page=2&page=2")
        body = response.json()
        assert [i["title"] for i in body["items"]] == ["c", "b"]
        assert (body["total"], body["page"], body["per_page"], body["pages"]) == (5, 2, 2, 3)
        assert body["next_cursor"]
        assert response.headers["x-total-count"] == "5"
        links = response.headers["link"]
        for rel in ("first", "prev", "next", "last"):
            assert f'rel="{rel}"' in links
        assert "page=3" in links

    async def test_per_page_over_the_maximum_is_a_422_not_a_cap(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get(f"{API}?per_page=101")
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "per_page"
        assert (await client.get(f"{API}?per_page=100")).status_code == 200

    @pytest.mark.parametrize("order", ["-published_at", "published_at", "title", "-updated_at"])
    async def test_cursor_walks_every_article_once(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any], order: str
    ) -> None:
        seen: list[str] = []
        url = f"{API}?per_page=2&order={order}"
        for _ in range(10):
            response = await client.get(url)
            body = response.json()
            seen += [i["title"] for i in body["items"]]
            if body["next_cursor"] is None:
                break
            assert body["page"] is None or body["page"] == 1
            next_link = next(p for p in response.headers["link"].split(", ") if 'rel="next"' in p)
            cursor = parse_qs(urlparse(next_link[1 : next_link.index(">")]).query)["cursor"][0]
            assert cursor == body["next_cursor"]
            url = f"{API}?per_page=2&order={order}&cursor={cursor}"
        assert sorted(seen) == ["a", "b", "c", "d", "e"]
        assert len(seen) == 5
        assert seen == await titles(client, f"per_page=100&order={order}")

    async def test_cursor_is_stable_while_articles_are_added(
        self, client: httpx.AsyncClient, session: AsyncSession, newsroom: dict[str, Any]
    ) -> None:
        first = (await client.get(f"{API}?per_page=2")).json()
        await make_article(
            session, await make_user(session), title="breaking", published_at=utcnow()
        )
        rest = await titles(client, f"per_page=10&cursor={first['next_cursor']}")
        assert rest == ["c", "b", "a"]

    @pytest.mark.parametrize(
        "query", ["cursor=garbage", "cursor=eyJvIjoieCJ9", "cursor=x&page=2", "order=relevance"]
    )
    async def test_bad_cursor_use_is_a_422(self, client: httpx.AsyncClient, query: str) -> None:
        response = await client.get(f"{API}?{query}")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_cursor_from_one_order_is_refused_by_another(
        self, client: httpx.AsyncClient, newsroom: dict[str, Any]
    ) -> None:
        cursor = (await client.get(f"{API}?per_page=1")).json()["next_cursor"]
        response = await client.get(f"{API}?order=title&cursor={cursor}")
        assert response.status_code == 422


class TestSearch:
    @pytest.fixture
    async def stories(self, session: AsyncSession) -> None:
        author = await make_user(session)
        await make_article(
            session,
            author,
            title="Taliban invited to peace talks",
            kicker="Hanif Atmar:",
            body="<p>Russia must press the insurgents to negotiate.</p>",
        )
        await make_article(
            session,
            author,
            title="Helicopters stay",
            body="<p>Afghan forces will keep Russian helicopters; talks with the Taliban "
            "are mentioned once.</p>",
        )
        await make_article(session, author, title="Weather", body="<p>Sunny in Kabul.</p>")
        await make_article(
            session,
            author,
            title="Draft about the Taliban",
            status=ArticleStatus.draft,
        )

    async def test_search_finds_ranks_and_hides_drafts(
        self, client: httpx.AsyncClient, stories: None
    ) -> None:
        found = await titles(client, "q=taliban")
        assert found == ["Taliban invited to peace talks", "Helicopters stay"]
        assert await titles(client, "q=atmar") == ["Taliban invited to peace talks"]
        assert await titles(client, "q=helicopter") == ["Helicopters stay"], "stemmed"
        assert await titles(client, "q=kabul&order=-published_at") == ["Weather"]
        assert await titles(client, "q=nothing+matches+this") == []

    async def test_search_combines_with_filters_and_paging(
        self, client: httpx.AsyncClient, stories: None
    ) -> None:
        response = await client.get(f"{API}?q=taliban&per_page=1")
        assert response.json()["total"] == 2
        assert response.json()["next_cursor"] is None, "relevance pages by number"
        assert await titles(client, "q=taliban&per_page=1&page=2") == ["Helicopters stay"]

    @pytest.mark.parametrize("q", ['"', "NEAR(a b)", "title:x", "a* OR", "-", "%_'; drop"])
    async def test_search_syntax_in_input_is_harmless(
        self, client: httpx.AsyncClient, stories: None, q: str
    ) -> None:
        response = await client.get(API, params={"q": q})
        assert response.status_code == 200

    async def test_search_query_length_is_bounded(self, client: httpx.AsyncClient) -> None:
        response = await client.get(API, params={"q": "x" * 201})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "q"
