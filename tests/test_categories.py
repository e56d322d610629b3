"""Categories: the public tree, article counts, editors' writes and safe deletion."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus, article_categories
from app.categories import service as categories
from app.categories.models import Category
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.users.models import Role
from tests.factories import auth_headers, insert_article, make_category, make_user
from tests.support import assert_problem

URL = "/api/v1/categories"
PUBLIC_KEYS = {
    "id",
    "name",
    "slug",
    "description",
    "parent_id",
    "article_count",
    "own_article_count",
    "created_at",
    "updated_at",
}


async def world_asia_kabul(session: AsyncSession) -> tuple[Category, Category, Category]:
    world = await make_category(session, name="World")
    asia = await make_category(session, name="Asia", parent=world)
    kabul = await make_category(session, name="Kabul", parent=asia)
    return world, asia, kabul


def refs(*items: Category) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "slug": c.slug} for c in items]


class TestPublicList:
    async def test_flat_list_is_ordered_by_name_in_the_page_envelope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world, asia, _ = await world_asia_kabul(session)
        await make_category(session, name="Business", description="Money.")
        response = await client.get(URL)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"items", "total", "page", "per_page", "pages", "next_cursor"}
        assert [c["name"] for c in body["items"]] == ["Asia", "Business", "Kabul", "World"]
        assert all(set(item) == PUBLIC_KEYS for item in body["items"])
        assert body["items"][0]["parent_id"] == world.id
        assert body["items"][2]["parent_id"] == asia.id
        assert (body["total"], body["page"], body["per_page"], body["pages"]) == (4, 1, 100, 1)
        assert response.headers["x-total-count"] == "4"
        assert 'rel="last"' in response.headers["link"]
        assert response.headers["cache-control"].startswith("public")

    async def test_pages_follow_per_page_and_over_the_maximum_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        for name in ("A", "B", "C"):
            await make_category(session, name=name)
        response = await client.get(URL, params={"per_page": 2, "page": 2})
        body = response.json()
        assert [c["name"] for c in body["items"]] == ["C"]
        assert (body["total"], body["page"], body["per_page"], body["pages"]) == (3, 2, 2, 2)
        assert 'rel="prev"' in response.headers["link"]
        problem = assert_problem(await client.get(URL, params={"per_page": 101}), 422)
        assert problem["errors"][0]["field"] == "per_page"

    async def test_tree_nests_every_category_under_its_parent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world, asia, kabul = await world_asia_kabul(session)
        await make_category(session, name="Business")
        response = await client.get(URL, params={"tree": "true", "per_page": 1})
        assert response.status_code == 200
        body = response.json()
        assert (body["total"], body["page"], body["per_page"], body["pages"]) == (4, 1, 4, 1)
        assert [c["name"] for c in body["items"]] == ["Business", "World"]
        world_node = body["items"][1]
        assert world_node["id"] == world.id
        assert [c["id"] for c in world_node["children"]] == [asia.id]
        assert [c["id"] for c in world_node["children"][0]["children"]] == [kabul.id]
        assert world_node["children"][0]["children"][0]["children"] == []
        assert response.headers["x-total-count"] == "4"

    async def test_tree_of_nothing_is_an_empty_page(self, client: httpx.AsyncClient) -> None:
        body = (await client.get(URL, params={"tree": "true"})).json()
        assert body["items"] == []
        assert body["total"] == 0

    async def test_fields_trim_each_item_and_an_unknown_field_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await world_asia_kabul(session)
        body = (await client.get(URL, params={"fields": "id,name"})).json()
        assert all(set(item) == {"id", "name"} for item in body["items"])
        assert body["total"] == 3
        problem = assert_problem(await client.get(URL, params={"fields": "id,colour"}), 422)
        assert problem["errors"][0]["field"] == "fields"

    async def test_fields_trim_the_tree_at_every_depth(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await world_asia_kabul(session)
        body = (await client.get(URL, params={"tree": "true", "fields": "name,children"})).json()
        assert body["items"] == [
            {
                "name": "World",
                "children": [{"name": "Asia", "children": [{"name": "Kabul", "children": []}]}],
            }
        ]
        assert body["total"] == 3


class TestPublicDetail:
    async def test_detail_has_breadcrumbs_from_the_root_and_direct_children(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world, asia, kabul = await world_asia_kabul(session)
        await make_category(session, name="Herat", parent=asia)
        response = await client.get(f"{URL}/{asia.id}")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == PUBLIC_KEYS | {"path", "children"}
        assert body["path"] == refs(world, asia)
        assert [c["name"] for c in body["children"]] == ["Herat", "Kabul"]
        assert response.headers["etag"].startswith(f'"{asia.version}-')
        leaf = (await client.get(f"{URL}/{kabul.id}")).json()
        assert leaf["path"] == refs(world, asia, kabul)
        assert leaf["children"] == []

    async def test_by_slug_reads_the_same_category(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, asia, _ = await world_asia_kabul(session)
        by_id = await client.get(f"{URL}/{asia.id}")
        by_slug = await client.get(f"{URL}/by-slug/asia")
        assert by_slug.status_code == 200
        assert by_slug.json() == by_id.json()
        assert by_slug.headers["etag"] == by_id.headers["etag"]

    async def test_unknown_category_is_a_404_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(f"{URL}/999"), 404)
        assert_problem(await client.get(f"{URL}/by-slug/nowhere"), 404)

    async def test_detail_fields_trim_and_unknown_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world, asia, _ = await world_asia_kabul(session)
        body = (await client.get(f"{URL}/{asia.id}", params={"fields": "name,path"})).json()
        assert body == {"name": "Asia", "path": refs(world, asia)}
        assert_problem(await client.get(f"{URL}/{asia.id}", params={"fields": "nope"}), 422)


class TestArticleCount:
    async def test_counts_public_articles_as_the_category_filter_shows_them(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session)
        world = await make_category(session, name="World")
        asia = await make_category(session, name="Asia", parent=world)
        sport = await make_category(session, name="Sport")
        await insert_article(session, author, asia)
        await insert_article(session, author, sport, also_in=(asia,))
        await insert_article(
            session,
            author,
            asia,
            status=ArticleStatus.scheduled,
            published_at=utcnow() - timedelta(minutes=5),
        )
        await insert_article(session, author, asia, status=ArticleStatus.draft)
        await insert_article(
            session,
            author,
            asia,
            status=ArticleStatus.scheduled,
            published_at=utcnow() + timedelta(days=1),
        )
        listed = (await client.get(URL)).json()["items"]
        counts = {c["name"]: (c["article_count"], c["own_article_count"]) for c in listed}
        # World holds nothing itself; the article in Sport and Asia counts once below it.
        assert counts == {"Asia": (3, 3), "Sport": (1, 1), "World": (3, 0)}
        for category in listed:
            filtered = await client.get("/api/v1/articles", params={"category": category["slug"]})
            assert filtered.json()["total"] == category["article_count"]
        detail = (await client.get(f"{URL}/{world.id}")).json()
        assert (detail["article_count"], detail["own_article_count"]) == (3, 0)
        tree = (await client.get(URL, params={"tree": "true"})).json()["items"]
        world_node = next(n for n in tree if n["name"] == "World")
        assert (world_node["article_count"], world_node["own_article_count"]) == (3, 0)
        assert world_node["children"][0]["article_count"] == 3


class TestCreate:
    async def test_slug_is_generated_from_the_name_with_transliteration(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        response = await client.post(URL, json={"name": "  Ölçüm Haberleri "}, headers=headers)
        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "Ölçüm Haberleri"
        assert body["slug"] == "olcum-haberleri"
        assert body["path"] == [{"id": body["id"], "name": body["name"], "slug": body["slug"]}]
        assert body["article_count"] == 0
        assert response.headers["location"] == f"{URL}/{body['id']}"
        assert response.headers["etag"].startswith('"1-')
        elsewhere = await client.post(
            URL, json={"name": "Ölçüm haberleri", "parent_id": body["id"]}, headers=headers
        )
        assert elsewhere.json()["slug"] == "olcum-haberleri-2"

    async def test_a_name_taken_among_siblings_is_a_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        local = (await client.post(URL, json={"name": "Local News"}, headers=headers)).json()
        for name in ("Local News", "local news", "LOCAL  NEWS"):
            problem = assert_problem(
                await client.post(URL, json={"name": name}, headers=headers), 409
            )
            assert problem["errors"][0]["field"] == "name"
        world = (await client.post(URL, json={"name": "World"}, headers=headers)).json()
        sport = {"name": "Sport", "parent_id": world["id"]}
        assert (await client.post(URL, json=sport, headers=headers)).status_code == 201
        # The same name under another parent is another section.
        local_sport = {"name": "Sport", "parent_id": local["id"]}
        moved = await client.post(URL, json=local_sport, headers=headers)
        assert moved.status_code == 201
        # Renaming or moving into a clash is refused too, and changes nothing.
        renamed = await client.patch(
            f"{URL}/{world['id']}", json={"name": "Local news"}, headers=headers
        )
        assert_problem(renamed, 409)
        into = await client.patch(
            f"{URL}/{moved.json()['id']}", json={"parent_id": world["id"]}, headers=headers
        )
        assert_problem(into, 409)
        after = (await client.get(f"{URL}/{moved.json()['id']}")).json()
        assert after["parent_id"] == local["id"]
        names = [
            c["name"] for c in (await client.get(URL, params={"per_page": 100})).json()["items"]
        ]
        assert sorted(names) == ["Local News", "Sport", "Sport", "World"]

    async def test_an_explicit_slug_that_is_taken_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        await make_category(session, name="World", slug="world")
        response = await client.post(URL, json={"name": "Globe", "slug": "world"}, headers=headers)
        problem = assert_problem(response, 409)
        assert problem["errors"][0]["field"] == "slug"

    async def test_created_under_a_parent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        response = await client.post(
            URL, json={"name": "Asia", "parent_id": world.id}, headers=headers
        )
        assert response.status_code == 201
        assert response.json()["parent_id"] == world.id
        assert [c["name"] for c in response.json()["path"]] == ["World", "Asia"]

    async def test_unknown_parent_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        response = await client.post(URL, json={"name": "Asia", "parent_id": 999}, headers=headers)
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["field"] == "parent_id"

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"name": "World", "colour": "blue"}, "colour"),
            ({"name": "   "}, "name"),
            ({"name": "x" * 121}, "name"),
            ({}, "name"),
            ({"name": "World", "slug": "Not A Slug"}, "slug"),
            ({"name": "World", "slug": "trailing-"}, "slug"),
            ({"name": "World", "slug": "a" * 81}, "slug"),
            ({"name": "World", "description": "x" * 5001}, "description"),
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


class TestUpdate:
    async def test_patch_changes_only_what_is_sent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        asia = await make_category(
            session, name="Asia", slug="asia-desk", parent=world, description="The region."
        )
        response = await client.patch(f"{URL}/{asia.id}", json={"name": "Asia"}, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["slug"], body["description"], body["parent_id"]) == (
            "asia-desk",
            "The region.",
            world.id,
        )
        response = await client.patch(
            f"{URL}/{asia.id}", json={"name": "Asia Pacific", "parent_id": None}, headers=headers
        )
        body = response.json()
        assert (body["name"], body["slug"], body["parent_id"]) == (
            "Asia Pacific",
            "asia-desk",
            None,
        )
        assert body["description"] == "The region."

    async def test_put_resets_what_is_absent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        asia = await make_category(
            session, name="Asia", slug="asia-desk", parent=world, description="The region."
        )
        response = await client.put(f"{URL}/{asia.id}", json={"name": "Asia"}, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["slug"], body["description"], body["parent_id"]) == (
            "Asia",
            "asia",
            None,
            None,
        )
        assert_problem(await client.put(f"{URL}/{asia.id}", json={}, headers=headers), 422)

    async def test_put_keeps_the_slug_when_the_name_gives_the_same_one(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        response = await client.put(f"{URL}/{world.id}", json={"name": "world"}, headers=headers)
        assert response.json()["slug"] == "world"

    async def test_patch_name_null_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        response = await client.patch(f"{URL}/{world.id}", json={"name": None}, headers=headers)
        assert assert_problem(response, 422)["errors"][0]["field"] == "name"

    async def test_patch_slug_taken_by_another_is_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        await make_category(session, name="World")
        asia = await make_category(session, name="Asia")
        same = await client.patch(f"{URL}/{asia.id}", json={"slug": "asia"}, headers=headers)
        assert same.status_code == 200
        taken = await client.patch(f"{URL}/{asia.id}", json={"slug": "world"}, headers=headers)
        assert assert_problem(taken, 409)["errors"][0]["field"] == "slug"

    @pytest.mark.parametrize("target", ["itself", "child", "grandchild"])
    async def test_a_parent_that_makes_a_cycle_is_422(
        self, client: httpx.AsyncClient, session: AsyncSession, target: str
    ) -> None:
        headers = await auth_headers(session)
        world, asia, kabul = await world_asia_kabul(session)
        parent = {"itself": world, "child": asia, "grandchild": kabul}[target]
        response = await client.patch(
            f"{URL}/{world.id}", json={"parent_id": parent.id}, headers=headers
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "parent_id"

    async def test_moving_a_subtree_elsewhere_is_allowed(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        _, asia, kabul = await world_asia_kabul(session)
        regions = await make_category(session, name="Regions")
        response = await client.patch(
            f"{URL}/{asia.id}", json={"parent_id": regions.id}, headers=headers
        )
        assert response.status_code == 200
        path = (await client.get(f"{URL}/{kabul.id}")).json()["path"]
        assert [c["name"] for c in path] == ["Regions", "Asia", "Kabul"]

    async def test_unknown_category_is_404(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        assert_problem(await client.patch(f"{URL}/999", json={}, headers=headers), 404)


class TestIfMatch:
    async def test_a_write_from_a_stale_copy_is_412_and_a_fresh_one_succeeds(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        etag = (await client.get(f"{URL}/{world.id}")).headers["etag"]
        first = await client.patch(
            f"{URL}/{world.id}",
            json={"description": "News from abroad."},
            headers={**headers, "If-Match": etag},
        )
        assert first.status_code == 200
        assert first.headers["etag"].startswith('"2-')
        stale = await client.put(
            f"{URL}/{world.id}", json={"name": "Globe"}, headers={**headers, "If-Match": etag}
        )
        assert assert_problem(stale, 412)["type"].endswith("precondition-failed")
        stale_delete = await client.delete(
            f"{URL}/{world.id}", headers={**headers, "If-Match": etag}
        )
        assert_problem(stale_delete, 412)
        assert (await client.get(f"{URL}/{world.id}")).json()["name"] == "World"
        fresh = (await client.get(f"{URL}/{world.id}")).headers["etag"]
        assert fresh == first.headers["etag"]
        deleted = await client.delete(f"{URL}/{world.id}", headers={**headers, "If-Match": fresh})
        assert deleted.status_code == 204


class TestDelete:
    async def test_an_empty_category_is_deleted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world = await make_category(session, name="World")
        response = await client.delete(f"{URL}/{world.id}", headers=headers)
        assert response.status_code == 204
        assert response.content == b""
        assert_problem(await client.get(f"{URL}/{world.id}"), 404)

    async def test_a_category_with_articles_is_409_saying_how_many(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        author = await make_user(session)
        world = await make_category(session, name="World")
        sport = await make_category(session, name="Sport")
        await insert_article(session, author, world, status=ArticleStatus.draft)
        await insert_article(session, author, sport, also_in=(world,))
        response = await client.delete(f"{URL}/{world.id}", headers=headers)
        problem = assert_problem(response, 409)
        assert "2 article" in problem["detail"]
        assert "move_to" in problem["detail"]
        assert (await client.get(f"{URL}/{world.id}")).status_code == 200

    async def test_move_to_moves_every_article_then_deletes(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        author = await make_user(session)
        old = await make_category(session, name="Old")
        new = await make_category(session, name="New")
        sport = await make_category(session, name="Sport")
        primary = await insert_article(session, author, old)
        secondary = await insert_article(session, author, sport, also_in=(old,))
        both = await insert_article(session, author, new, also_in=(old,))
        response = await client.delete(
            f"{URL}/{old.id}", params={"move_to": new.id}, headers=headers
        )
        assert response.status_code == 204
        assert_problem(await client.get(f"{URL}/{old.id}"), 404)

        rows = await session.execute(select(Article.id, Article.category_id, Article.version))
        articles = {aid: (cid, version) for aid, cid, version in rows}
        assert articles[primary.id] == (new.id, 2)
        assert articles[secondary.id] == (sport.id, 2)
        assert articles[both.id] == (new.id, 2)
        links = await session.execute(
            select(article_categories.c.article_id, article_categories.c.category_id)
        )
        assert sorted(tuple(row) for row in links) == sorted(
            [
                (primary.id, new.id),
                (secondary.id, sport.id),
                (secondary.id, new.id),
                (both.id, new.id),
            ]
        )
        assert (await client.get(f"{URL}/{new.id}")).json()["article_count"] == 3

    @pytest.mark.parametrize("target", ["unknown", "itself"])
    async def test_move_to_must_name_another_existing_category(
        self, client: httpx.AsyncClient, session: AsyncSession, target: str
    ) -> None:
        headers = await auth_headers(session)
        author = await make_user(session)
        world = await make_category(session, name="World")
        await insert_article(session, author, world)
        move_to = 999 if target == "unknown" else world.id
        response = await client.delete(
            f"{URL}/{world.id}", params={"move_to": move_to}, headers=headers
        )
        error = assert_problem(response, 422)["errors"][0]
        assert (error["field"], error["location"]) == ("move_to", "query")

    async def test_children_move_up_to_the_deleted_categorys_parent(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session)
        world, asia, kabul = await world_asia_kabul(session)
        herat = await make_category(session, name="Herat", parent=asia)
        assert (await client.delete(f"{URL}/{asia.id}", headers=headers)).status_code == 204
        for child in (kabul, herat):
            body = (await client.get(f"{URL}/{child.id}")).json()
            assert body["parent_id"] == world.id
            assert [c["name"] for c in body["path"]] == ["World", child.name]
        assert (await client.delete(f"{URL}/{world.id}", headers=headers)).status_code == 204
        assert (await client.get(f"{URL}/{kabul.id}")).json()["parent_id"] is None


class TestPermissions:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", ""), ("PUT", "/1"), ("PATCH", "/1"), ("DELETE", "/1")],
    )
    async def test_writes_need_a_token_with_categories_write(
        self, client: httpx.AsyncClient, session: AsyncSession, method: str, path: str
    ) -> None:
        await make_category(session, name="World")
        body = None if method == "DELETE" else {"name": "Globe"}
        anonymous = await client.request(method, f"{URL}{path}", json=body)
        assert_problem(anonymous, 401)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        author = await auth_headers(session, Role.author)
        forbidden = await client.request(method, f"{URL}{path}", json=body, headers=author)
        assert "categories:write" in assert_problem(forbidden, 403)["detail"]

    async def test_admins_may_write_categories(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = await auth_headers(session, Role.admin)
        response = await client.post(URL, json={"name": "World"}, headers=headers)
        assert response.status_code == 201


class TestServiceHelpers:
    async def test_get_many_keeps_order_and_names_unknown_ids(self, session: AsyncSession) -> None:
        world, asia, kabul = await world_asia_kabul(session)
        found = await categories.get_many(session, [kabul.id, world.id, kabul.id])
        assert [c.id for c in found] == [kabul.id, world.id]
        with pytest.raises(InvalidInput) as caught:
            await categories.get_many(session, [asia.id, 998, 999])
        assert caught.value.field == "category_ids"
        assert "998, 999" in str(caught.value.detail)

    async def test_descendant_ids_include_the_category_and_all_below(
        self, session: AsyncSession
    ) -> None:
        world, asia, kabul = await world_asia_kabul(session)
        sport = await make_category(session, name="Sport")
        found = await categories.descendant_ids(session, ["world", "asia", "sport", "nowhere"])
        assert found == {
            "world": {world.id, asia.id, kabul.id},
            "asia": {asia.id, kabul.id},
            "sport": {sport.id},
            "nowhere": set(),
        }

    async def test_path_is_root_first(self, session: AsyncSession) -> None:
        world, asia, kabul = await world_asia_kabul(session)
        assert [c.id for c in await categories.path(session, kabul)] == [
            world.id,
            asia.id,
            kabul.id,
        ]
        assert [c.id for c in await categories.path(session, world)] == [world.id]
