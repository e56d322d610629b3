"""Articles: the write API, its rules, and the public read API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.categories.models import Category
from app.core.db import utcnow
from app.users.models import Role, User
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import assert_problem

API = "/api/v1/articles"


@pytest.fixture
async def editor(session: AsyncSession) -> User:
    return await make_user(session, role=Role.editor, display_name="Desk Editor")


@pytest.fixture
async def editor_token(session: AsyncSession, editor: User) -> str:
    return await make_token(session, editor)


async def category(session: AsyncSession, name: str, parent: Category | None = None) -> Category:
    made = Category(
        name=name, slug=name.lower().replace(" ", "-"), parent_id=parent.id if parent else None
    )
    session.add(made)
    await session.commit()
    return made


class TestWebsiteAddress:
    async def test_lists_and_pages_give_the_readers_url_from_the_template(
        self, client: httpx.AsyncClient, app: Any, session: AsyncSession, editor: User
    ) -> None:
        app.state.settings = app.state.settings.model_copy(
            update={
                "site_url": "https://news.example",
                "article_url_template": "{site_url}/{number}/{slug}",
            }
        )
        article = await make_article(session, editor, title="Dam opens", number=5186)
        wanted = "https://news.example/5186/dam-opens"
        assert (await client.get(f"{API}/{article.id}")).json()["url"] == wanted
        assert (await client.get(API)).json()["items"][0]["url"] == wanted
        trimmed = await client.get(API, params={"fields": "id,url"})
        assert trimmed.json()["items"] == [{"id": article.id, "url": wanted}]


class TestCreate:
    async def test_create_derives_slug_excerpt_counts_and_number(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        body = "<p>" + " ".join(f"word{i}" for i in range(300)) + "</p>"
        response = await client.post(
            API,
            json={"title": "Ölçüm: Kabul edildi!", "body": body, "status": "published"},
            headers=bearer(editor_token),
        )
        assert response.status_code == 201, response.text
        article = response.json()
        assert response.headers["location"] == f"{API}/{article['id']}"
        assert article["slug"] == "olcum-kabul-edildi"
        assert article["word_count"] == 300
        assert article["reading_minutes"] == 2
        assert article["excerpt"].startswith("word0 word1")
        assert article["excerpt"].endswith("…")
        assert article["number"] == 1
        assert article["status"] == "published"
        assert article["published_at"].endswith("Z")
        second = await client.post(API, json={"title": "Next"}, headers=bearer(editor_token))
        assert second.json()["number"] == 2

    async def test_number_can_be_given_on_import(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        made = await client.post(
            API, json={"title": "Imported", "number": 5186}, headers=bearer(editor_token)
        )
        assert made.json()["number"] == 5186
        nxt = await client.post(API, json={"title": "After"}, headers=bearer(editor_token))
        assert nxt.json()["number"] == 5187

    async def test_sanitisation_removes_scripts_and_event_handlers(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        dirty = (
            '<p onclick="steal()">Hello <script>alert(1)</script>'
            '<img src="x.png" onerror="alert(2)">'
            '<a href="javascript:alert(3)">x</a><a href="https://ok.example/">ok</a></p>'
            "<style>body{}</style><iframe src='https://evil.example'></iframe>"
        )
        made = await client.post(
            API,
            json={"title": "Dirty", "body": dirty, "status": "published"},
            headers=bearer(editor_token),
        )
        body = made.json()["body"]
        public = (await client.get(f"{API}/{made.json()['id']}")).json()["body"]
        for html in (body, public):
            lowered = html.lower()
            assert "<script" not in lowered
            assert "onerror" not in lowered
            assert "onclick" not in lowered
            assert "javascript:" not in lowered
            assert "<iframe" not in lowered
            assert "<style" not in lowered
            assert 'href="https://ok.example/"' in html
            assert "Hello" in html

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"title": ""}, "title"),
            ({"title": "   "}, "title"),
            ({"title": "x", "category_id": 999}, "category_id"),
            ({"title": "x", "published_at": "2017-11-24T12:53:00"}, "published_at"),
            ({"title": "x", "source_url": "javascript:alert(1)"}, "source_url"),
            ({"title": "x", "featured_image_url": "ftp://example.com/a.png"}, "featured_image_url"),
            ({"title": "x", "status": "scheduled"}, "published_at"),
            ({"title": "x", "comment_count": 99}, "comment_count"),
            ({"title": "x", "slug": "Not A Slug"}, "slug"),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_field(
        self, client: httpx.AsyncClient, editor_token: str, payload: dict[str, Any], field: str
    ) -> None:
        response = await client.post(API, json=payload, headers=bearer(editor_token))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in response.json()["errors"]}

    async def test_duplicate_slug_and_number_are_409(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        await client.post(
            API, json={"title": "A", "slug": "same", "number": 7}, headers=bearer(editor_token)
        )
        slug = await client.post(
            API, json={"title": "B", "slug": "same"}, headers=bearer(editor_token)
        )
        assert slug.status_code == 409
        assert slug.json()["errors"][0]["field"] == "slug"
        number = await client.post(
            API, json={"title": "C", "number": 7}, headers=bearer(editor_token)
        )
        assert number.status_code == 409
        assert number.json()["errors"][0]["field"] == "number"

    async def test_generated_slugs_stay_unique(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        slugs = [
            (await client.post(API, json={"title": "Same"}, headers=bearer(editor_token))).json()[
                "slug"
            ]
            for _ in range(3)
        ]
        assert slugs == ["same", "same-2", "same-3"]


class TestScheduledVisibility:
    async def test_a_scheduled_article_appears_when_its_time_comes(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User
    ) -> None:
        future = utcnow() + timedelta(hours=2)
        article = await make_article(
            session, editor, status=ArticleStatus.scheduled, published_at=future
        )
        assert article.status == ArticleStatus.scheduled
        assert (await client.get(f"{API}/{article.id}")).status_code == 404
        assert (await client.get(API)).json()["total"] == 0

        # No job runs: only the clock moves past published_at.
        await session.execute(
            update(Article)
            .where(Article.id == article.id)
            .values(published_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        shown = await client.get(f"{API}/{article.id}")
        assert shown.status_code == 200
        assert shown.json()["status"] == "published"
        assert (await client.get(API)).json()["total"] == 1

    async def test_publishing_with_a_future_date_schedules(
        self, client: httpx.AsyncClient, editor_token: str
    ) -> None:
        when = (utcnow() + timedelta(days=1)).isoformat()
        made = await client.post(
            API,
            json={"title": "Tomorrow", "status": "published", "published_at": when},
            headers=bearer(editor_token),
        )
        assert made.json()["status"] == "scheduled"

    async def test_scheduling_for_a_past_time_is_a_422_unless_publishing(
        self, client: httpx.AsyncClient, session: AsyncSession, editor_token: str
    ) -> None:
        past = (utcnow() - timedelta(hours=3)).isoformat()
        headers = bearer(editor_token)
        refused = await client.post(
            API,
            json={"title": "Yesterday", "status": "scheduled", "published_at": past},
            headers=headers,
        )
        assert assert_problem(refused, 422)["errors"][0]["field"] == "published_at"
        assert (await client.get(API, params={"status": "any"}, headers=headers)).json()[
            "total"
        ] == 0
        backdated = await client.post(
            API,
            json={"title": "Yesterday", "status": "published", "published_at": past},
            headers=headers,
        )
        assert backdated.json()["status"] == "published"
        later = (utcnow() + timedelta(hours=3)).isoformat()
        waiting = await client.post(
            API,
            json={"title": "Later", "status": "scheduled", "published_at": later},
            headers=headers,
        )
        path = f"{API}/{waiting.json()['id']}"
        moved = await client.patch(path, json={"published_at": past}, headers=headers)
        assert_problem(moved, 422)
        # Its time passing on its own publishes it; an edit then changes nothing of that.
        await session.execute(
            update(Article)
            .where(Article.id == waiting.json()["id"])
            .values(published_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        edited = await client.patch(path, json={"title": "Now"}, headers=headers)
        assert edited.status_code == 200
        assert edited.json()["status"] == "published"

    async def test_drafts_and_archived_are_not_public(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User
    ) -> None:
        draft = await make_article(session, editor, status=ArticleStatus.draft)
        archived = await make_article(session, editor, status=ArticleStatus.archived)
        for article in (draft, archived):
            assert (await client.get(f"{API}/{article.id}")).status_code == 404
            assert (await client.get(f"{API}/by-slug/{article.slug}")).status_code == 404
            assert (await client.get(f"{API}/by-number/{article.number}")).status_code == 404
        assert (await client.get(API)).json()["items"] == []


class TestRoles:
    async def test_authors_touch_only_their_own_articles(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        alice = await make_user(session, role=Role.author)
        bob = await make_user(session, role=Role.author)
        alice_token = await make_token(session, alice)
        bobs_draft = await make_article(session, bob, status=ArticleStatus.draft)
        bobs_live = await make_article(session, bob)

        own = await client.post(API, json={"title": "Mine"}, headers=bearer(alice_token))
        assert own.status_code == 201
        patch_own = await client.patch(
            f"{API}/{own.json()['id']}", json={"title": "Still mine"}, headers=bearer(alice_token)
        )
        assert patch_own.status_code == 200

        for method in ("get", "patch", "delete"):
            kwargs: dict[str, Any] = {"headers": bearer(alice_token)}
            if method == "patch":
                kwargs["json"] = {"title": "Hijacked"}
            response = await getattr(client, method)(f"{API}/{bobs_draft.id}", **kwargs)
            assert response.status_code == 404, method
        changed = await client.patch(
            f"{API}/{bobs_live.id}", json={"title": "Hijacked"}, headers=bearer(alice_token)
        )
        assert changed.status_code == 403
        deleted = await client.delete(f"{API}/{bobs_live.id}", headers=bearer(alice_token))
        assert deleted.status_code == 403

    async def test_an_author_cannot_file_under_someone_else(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User
    ) -> None:
        author = await make_user(session, role=Role.author)
        token = await make_token(session, author)
        response = await client.post(
            API, json={"title": "x", "author_id": editor.id}, headers=bearer(token)
        )
        assert response.status_code == 403

    async def test_editors_change_anyones_article_and_may_reassign(
        self, client: httpx.AsyncClient, session: AsyncSession, editor_token: str
    ) -> None:
        author = await make_user(session, role=Role.author)
        other = await make_user(session, role=Role.author)
        article = await make_article(session, author, status=ArticleStatus.draft)
        response = await client.patch(
            f"{API}/{article.id}",
            json={"status": "published", "author_id": other.id},
            headers=bearer(editor_token),
        )
        assert response.status_code == 200
        assert response.json()["author_id"] == other.id
        assert response.json()["status"] == "published"

    async def test_drafts_are_listed_with_a_token(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        author = await make_user(session, role=Role.author)
        author_token = await make_token(session, author)
        await make_article(session, author, status=ArticleStatus.draft, title="Own draft")
        await make_article(session, editor, status=ArticleStatus.draft, title="Desk draft")
        by_editor = await client.get(f"{API}?status=draft", headers=bearer(editor_token))
        assert {a["title"] for a in by_editor.json()["items"]} == {"Own draft", "Desk draft"}
        by_author = await client.get(f"{API}?status=draft", headers=bearer(author_token))
        assert [a["title"] for a in by_author.json()["items"]] == ["Own draft"]
        anonymous = await client.get(f"{API}?status=draft")
        assert anonymous.status_code == 401
        reader = await make_token(session, author, scopes=["tokens:write"])
        assert (await client.get(f"{API}?status=draft", headers=bearer(reader))).status_code == 403

    async def test_writes_need_a_token_with_articles_write(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        assert (await client.post(API, json={"title": "x"})).status_code == 401
        admin = await make_user(session, role=Role.admin)
        narrow = await make_token(session, admin, scopes=["comments:moderate"])
        response = await client.post(API, json={"title": "x"}, headers=bearer(narrow))
        assert response.status_code == 403


class TestConcurrency:
    async def test_etag_304_and_if_match(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor)
        first = await client.get(f"{API}/{article.id}")
        etag = first.headers["etag"]
        assert etag.startswith('"')
        assert not etag.startswith("W/")
        assert "last-modified" in first.headers
        again = await client.get(f"{API}/{article.id}", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""

        mine = (await client.get(f"{API}/{article.id}", headers=bearer(editor_token))).headers[
            "etag"
        ]
        ok = await client.patch(
            f"{API}/{article.id}",
            json={"title": "First edit"},
            headers={**bearer(editor_token), "If-Match": mine},
        )
        assert ok.status_code == 200
        stale = await client.patch(
            f"{API}/{article.id}",
            json={"title": "Second edit from a stale copy"},
            headers={**bearer(editor_token), "If-Match": mine},
        )
        assert stale.status_code == 412
        assert stale.headers["content-type"] == "application/problem+json"
        current = (await client.get(f"{API}/{article.id}")).json()
        assert current["title"] == "First edit"
        assert (
            await client.get(f"{API}/{article.id}", headers={"If-None-Match": etag})
        ).status_code == 200
        delete = await client.delete(
            f"{API}/{article.id}", headers={**bearer(editor_token), "If-Match": mine}
        )
        assert delete.status_code == 412

    async def test_cache_control_public_for_readers_private_for_token_holders(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor)
        public = await client.get(f"{API}/{article.id}")
        assert public.headers["cache-control"].startswith("public, max-age=")
        private = await client.get(f"{API}/{article.id}", headers=bearer(editor_token))
        assert private.headers["cache-control"] == "private, no-store"
        listing = await client.get(API)
        assert listing.headers["cache-control"].startswith("public")
        assert listing.headers["etag"]


class TestSlugs:
    async def test_an_old_slug_redirects_to_the_new_one(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor, title="Original headline")
        changed = await client.patch(
            f"{API}/{article.id}", json={"slug": "better-headline"}, headers=bearer(editor_token)
        )
        assert changed.json()["slug"] == "better-headline"
        old = await client.get(f"{API}/by-slug/original-headline?fields=id,title")
        assert old.status_code == 301
        assert old.headers["location"].endswith(f"{API}/by-slug/better-headline?fields=id,title")
        new = await client.get(f"{API}/by-slug/better-headline")
        assert new.json()["id"] == article.id
        taken = await client.post(
            API, json={"title": "x", "slug": "original-headline"}, headers=bearer(editor_token)
        )
        assert taken.status_code == 409, "a retired slug stays reserved for its redirect"

    async def test_changing_the_title_keeps_the_slug(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor, title="Stable address")
        changed = await client.patch(
            f"{API}/{article.id}", json={"title": "New words"}, headers=bearer(editor_token)
        )
        assert changed.json()["slug"] == "stable-address"


class TestRevisions:
    async def test_changes_keep_revisions_that_can_be_restored(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor, title="v1", body="<p>first</p>")
        auth = bearer(editor_token)
        await client.patch(f"{API}/{article.id}", json={"title": "v2"}, headers=auth)
        await client.patch(f"{API}/{article.id}", json={"body": "<p>third</p>"}, headers=auth)
        await client.patch(f"{API}/{article.id}", json={"byline": "Staff"}, headers=auth)
        listed = (await client.get(f"{API}/{article.id}/revisions", headers=auth)).json()
        assert listed["total"] == 2, "a byline change is not a text revision"
        assert [r["title"] for r in listed["items"]] == ["v2", "v1"]
        assert listed["items"][0]["changed_by"]["display_name"] == "Desk Editor"
        first = listed["items"][1]
        one = (await client.get(f"{API}/{article.id}/revisions/{first['id']}", headers=auth)).json()
        assert one["body"] == "<p>first</p>"

        restored = await client.post(
            f"{API}/{article.id}/revisions/{first['id']}/restore", headers=auth
        )
        assert restored.status_code == 200
        assert restored.json()["title"] == "v1"
        assert restored.json()["body"] == "<p>first</p>"
        after = (await client.get(f"{API}/{article.id}/revisions", headers=auth)).json()
        assert after["total"] == 3
        assert after["items"][0]["title"] == "v2"
        assert (await client.get(f"{API}/{article.id}/revisions")).status_code == 401


class TestCorrections:
    async def test_corrections_are_dated_and_shown_under_the_article(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, editor_token: str
    ) -> None:
        article = await make_article(session, editor)
        made = await client.post(
            f"{API}/{article.id}/corrections",
            json={"kind": "correction", "text": "An earlier version misspelt a name."},
            headers=bearer(editor_token),
        )
        assert made.status_code == 201
        shown = (await client.get(f"{API}/{article.id}")).json()
        assert shown["corrections"][0]["text"] == "An earlier version misspelt a name."
        assert shown["corrections"][0]["noted_at"].endswith("Z")
        removed = await client.delete(
            f"{API}/{article.id}/corrections/{made.json()['id']}", headers=bearer(editor_token)
        )
        assert removed.status_code == 204
        assert (await client.get(f"{API}/{article.id}")).json()["corrections"] == []


class TestDetail:
    async def test_detail_has_breadcrumbs_tags_and_neighbours(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User
    ) -> None:
        world = await category(session, "World")
        asia = await category(session, "Asia", world)
        now = utcnow()
        older = await make_article(
            session, editor, category_id=asia.id, published_at=now - timedelta(days=2)
        )
        middle = await make_article(
            session,
            editor,
            category_id=asia.id,
            category_ids=[world.id],
            tags=["Afghanistan", "Peace talks"],
            published_at=now - timedelta(days=1),
        )
        newer = await make_article(session, editor, category_id=asia.id, published_at=now)
        await make_article(session, editor, published_at=now - timedelta(hours=30))
        detail = (await client.get(f"{API}/{middle.id}")).json()
        assert [c["slug"] for c in detail["breadcrumbs"]] == ["world", "asia"]
        assert {c["slug"] for c in detail["categories"]} == {"world", "asia"}
        assert detail["category"]["slug"] == "asia"
        assert [t["slug"] for t in detail["tags"]] == ["afghanistan", "peace-talks"]
        assert detail["previous"]["id"] == older.id
        assert detail["next"]["id"] == newer.id
        assert detail["author"] == {
            "display_name": "Desk Editor",
            "slug": "desk-editor",
            "avatar_url": None,
        }

    async def test_list_items_carry_no_body_and_fields_trims(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User
    ) -> None:
        article = await make_article(session, editor)
        listing = (await client.get(API)).json()
        assert "body" not in listing["items"][0]
        trimmed = await client.get(f"{API}?fields=id,title")
        assert trimmed.json()["items"] == [{"id": article.id, "title": article.title}]
        assert {"total", "page", "per_page", "pages", "next_cursor"} <= trimmed.json().keys()
        one = await client.get(f"{API}/{article.id}?fields=id,number,slug")
        assert one.json() == {"id": article.id, "number": article.number, "slug": article.slug}
        unknown = await client.get(f"{API}?fields=id,password")
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "fields"

    async def test_comments_close_at_is_derived_from_the_site_setting(
        self, client: httpx.AsyncClient, session: AsyncSession, editor: User, app: Any
    ) -> None:
        published = utcnow() - timedelta(days=1)
        article = await make_article(session, editor, published_at=published)
        closed = await make_article(session, editor, comment_status="closed")
        app.state.settings = app.state.settings.model_copy(update={"comments_close_after_days": 14})
        shown = (await client.get(f"{API}/{article.id}")).json()
        assert shown["comments_close_at"] is not None
        assert shown["comments_open"] is True
        assert (await client.get(f"{API}/{closed.id}")).json()["comments_open"] is False


class TestAuthors:
    async def test_only_authors_with_published_articles_and_no_private_fields(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        writer = await make_user(
            session, role=Role.author, display_name="Pat Writer", email="pat@example.com"
        )
        await make_user(session, role=Role.author, username="silent-one")
        drafter = await make_user(session, role=Role.author, username="drafter")
        await make_article(session, writer)
        await make_article(session, drafter, status=ArticleStatus.draft)
        listing = await client.get("/api/v1/authors")
        assert [a["slug"] for a in listing.json()["items"]] == ["pat-writer"]
        assert listing.json()["items"][0]["article_count"] == 1
        text = listing.text + (await client.get("/api/v1/authors/pat-writer")).text
        assert writer.username not in text
        assert "pat@example.com" not in text
        assert (await client.get("/api/v1/authors/drafter")).status_code == 404
        by_author = await client.get(f"{API}?author=pat-writer")
        assert by_author.json()["total"] == 1
