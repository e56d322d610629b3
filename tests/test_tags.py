"""Tags: public reads with counts, editors' writes, and resolving the tags an article names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus, article_tags
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.tags import service as tags
from app.tags.models import Tag
from app.users.models import Role
from tests.factories import auth_headers, insert_article, make_category, make_tag, make_user
from tests.support import assert_problem

URL = "/api/v1/tags"
PUBLIC_KEYS = {"id", "name", "slug", "article_count", "created_at", "updated_at"}


class TestPublicReads:
    async def test_list_is_ordered_by_name_ten_to_a_page(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        for n in range(12):
            await make_tag(session, name=f"Tag {n:02}")
        response = await client.get(URL)
        assert response.status_code == 200
        body = response.json()
        assert [t["name"] for t in body["items"]] == [f"Tag {n:02}" for n in range(10)]
        assert all(set(t) == PUBLIC_KEYS for t in body["items"])
        assert (body["total"], body["page"], body["per_page"], body["pages"]) == (12, 1, 10, 2)
        assert response.headers["x-total-count"] == "12"
        assert 'rel="next"' in response.headers["link"]
        assert_problem(await client.get(URL, params={"per_page": 101}), 422)

    async def test_q_filters_names_by_substring_in_any_case(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        for name in ("Elections", "Local elections", "Sport", "100% renewable", "Snake_case"):
            await make_tag(session, name=name)
        found = (await client.get(URL, params={"q": "ELECTION"})).json()
        assert [t["name"] for t in found["items"]] == ["Elections", "Local elections"]
        assert found["total"] == 2
        percent = (await client.get(URL, params={"q": "%"})).json()["items"]
        assert [t["name"] for t in percent] == ["100% renewable"]
        underscore = (await client.get(URL, params={"q": "_"})).json()["items"]
        assert [t["name"] for t in underscore] == ["Snake_case"]
        problem = assert_problem(await client.get(URL, params={"q": "x" * 101}), 422)
        assert problem["errors"][0]["field"] == "q"

    async def test_detail_by_id_and_by_slug(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        tag = await make_tag(session, name="Elections")
        by_id = await client.get(f"{URL}/{tag.id}")
        assert by_id.status_code == 200
        assert set(by_id.json()) == PUBLIC_KEYS
        assert by_id.headers["etag"].startswith('"1-')
        by_slug = await client.get(f"{URL}/by-slug/elections")
        assert by_slug.json() == by_id.json()
        assert_problem(await client.get(f"{URL}/999"), 404)
        assert_problem(await client.get(f"{URL}/by-slug/nothing"), 404)

    async def test_fields_trim_lists_and_details_and_unknown_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        tag = await make_tag(session, name="Elections")
        listed = (await client.get(URL, params={"fields": "slug"})).json()
        assert listed["items"] == [{"slug": "elections"}]
        assert listed["total"] == 1
        detail = (await client.get(f"{URL}/{tag.id}", params={"fields": "id,name"})).json()
        assert detail == {"id": tag.id, "name": "Elections"}
        assert_problem(await client.get(URL, params={"fields": "colour"}), 422)
        assert_problem(await client.get(f"{URL}/{tag.id}", params={"fields": "colour"}), 422)

    async def test_article_count_counts_only_public_articles(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        world = await make_category(session, name="World")
        elections = await make_tag(session, name="Elections")
        sport = await make_tag(session, name="Sport")
        await insert_article(session, author, world, tagged=(elections, sport))
        await insert_article(session, author, world, tagged=(elections,))
        await insert_article(
            session, author, world, tagged=(elections,), status=ArticleStatus.draft
        )
        await insert_article(
            session,
            author,
            world,
            tagged=(elections,),
            status=ArticleStatus.scheduled,
            published_at=utcnow() + timedelta(hours=2),
        )
        counts = {t["name"]: t["article_count"] for t in (await client.get(URL)).json()["items"]}
        assert counts == {"Elections": 2, "Sport": 1}
        assert (await client.get(f"{URL}/{elections.id}")).json()["article_count"] == 2


class TestWrites:
    async def test_create_generates_a_transliterated_slug(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        response = await client.post(URL, json={"name": " Ölçüm Haberleri "}, headers=headers)
        assert response.status_code == 201
        body = response.json()
        assert (body["name"], body["slug"], body["article_count"]) == (
            "Ölçüm Haberleri",
            "olcum-haberleri",
            0,
        )
        assert response.headers["location"] == f"{URL}/{body['id']}"

    async def test_an_explicit_slug_that_is_taken_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        await make_tag(session, name="Elections")
        response = await client.post(
            URL, json={"name": "Votes", "slug": "elections"}, headers=headers
        )
        assert assert_problem(response, 409)["errors"][0]["field"] == "slug"

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"name": "Elections", "count": 3}, "count"),
            ({"name": " "}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"name": "Elections", "slug": "UPPER"}, "slug"),
        ],
    )
    async def test_invalid_input_is_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        payload: dict[str, Any],
        field: str,
    ) -> None:
        headers = await auth_headers(session)
        problem = assert_problem(await client.post(URL, json=payload, headers=headers), 422)
        assert [e["field"] for e in problem["errors"]] == [field]

    async def test_patch_keeps_the_slug_and_put_regenerates_it(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        tag = await make_tag(session, name="Elections")
        patched = await client.patch(f"{URL}/{tag.id}", json={"name": "Votes"}, headers=headers)
        assert (patched.json()["name"], patched.json()["slug"]) == ("Votes", "elections")
        put = await client.put(f"{URL}/{tag.id}", json={"name": "Votes"}, headers=headers)
        assert (put.json()["name"], put.json()["slug"]) == ("Votes", "votes")
        regenerated = await client.patch(
            f"{URL}/{tag.id}", json={"name": "Ballots", "slug": None}, headers=headers
        )
        assert regenerated.json()["slug"] == "ballots"
        null_name = await client.patch(f"{URL}/{tag.id}", json={"name": None}, headers=headers)
        assert_problem(null_name, 422)

    async def test_if_match_refuses_a_stale_copy(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        tag = await make_tag(session, name="Elections")
        etag = (await client.get(f"{URL}/{tag.id}")).headers["etag"]
        ok = await client.patch(
            f"{URL}/{tag.id}", json={"name": "Votes"}, headers={**headers, "If-Match": etag}
        )
        assert ok.status_code == 200
        stale = await client.patch(
            f"{URL}/{tag.id}", json={"name": "Polls"}, headers={**headers, "If-Match": etag}
        )
        assert_problem(stale, 412)
        assert_problem(
            await client.delete(f"{URL}/{tag.id}", headers={**headers, "If-Match": etag}), 412
        )
        fresh = ok.headers["etag"]
        deleted = await client.delete(f"{URL}/{tag.id}", headers={**headers, "If-Match": fresh})
        assert deleted.status_code == 204

    async def test_delete_takes_the_tag_off_its_articles(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        author = await make_user(session)
        world = await make_category(session, name="World")
        elections = await make_tag(session, name="Elections")
        sport = await make_tag(session, name="Sport")
        article = await insert_article(session, author, world, tagged=(elections, sport))
        assert (await client.delete(f"{URL}/{elections.id}", headers=headers)).status_code == 204
        assert_problem(await client.get(f"{URL}/{elections.id}"), 404)
        links = await session.execute(select(article_tags.c.article_id, article_tags.c.tag_id))
        assert [tuple(row) for row in links] == [(article.id, sport.id)]
        version = await session.scalar(select(Article.version).where(Article.id == article.id))
        assert version == 2


class TestPermissions:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", ""), ("PUT", "/1"), ("PATCH", "/1"), ("DELETE", "/1")],
    )
    async def test_writes_need_a_token_with_categories_write(
        self, client: httpx.AsyncClient, session: AsyncSession, method: str, path: str
    ) -> None:
        await make_tag(session, name="Elections")
        body = None if method == "DELETE" else {"name": "Votes"}
        anonymous = await client.request(method, f"{URL}{path}", json=body)
        assert_problem(anonymous, 401)
        author = await auth_headers(session, Role.author)
        forbidden = await client.request(method, f"{URL}{path}", json=body, headers=author)
        assert "categories:write" in assert_problem(forbidden, 403)["detail"]


class TestResolve:
    async def test_creates_missing_tags_on_first_use_and_reuses_them_after(
        self, session: AsyncSession
    ) -> None:
        first = await tags.resolve(session, ["  Ölçüm Haberleri ", "Elections"])
        await session.commit()
        assert [(t.name, t.slug) for t in first] == [
            ("Ölçüm Haberleri", "olcum-haberleri"),
            ("Elections", "elections"),
        ]
        again = await tags.resolve(session, ["ölçüm haberleri", "elections", "ELECTIONS"])
        assert [t.id for t in again] == [first[0].id, first[1].id]
        assert await session.scalar(select(func.count()).select_from(Tag)) == 2

    async def test_finds_tags_by_slug_or_by_name_in_any_case(self, session: AsyncSession) -> None:
        custom = await make_tag(session, name="Elections 2026", slug="vote")
        found = await tags.resolve(session, ["vote", "elections 2026", "Vote"])
        assert [t.id for t in found] == [custom.id]
        assert await session.scalar(select(func.count()).select_from(Tag)) == 1

    async def test_a_new_name_whose_slug_is_taken_gets_a_free_one(
        self, session: AsyncSession
    ) -> None:
        await make_tag(session, name="C")
        [cpp] = await tags.resolve(session, ["C++"])
        assert (cpp.name, cpp.slug) == ("C++", "c-2")

    async def test_nothing_given_is_nothing_found(self, session: AsyncSession) -> None:
        assert await tags.resolve(session, []) == []

    @pytest.mark.parametrize("bad", ["", "   ", "x" * 101])
    async def test_each_tag_must_be_1_to_100_characters(
        self, session: AsyncSession, bad: str
    ) -> None:
        with pytest.raises(InvalidInput) as caught:
            await tags.resolve(session, ["Fine", bad])
        assert caught.value.field == "tags"
        assert await session.scalar(select(func.count()).select_from(Tag)) == 0
