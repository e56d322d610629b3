"""Readers' comments: posting, the never-published email, threads, moderation, anti-spam."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.comments import service as comments
from app.comments.models import Comment, CommentState
from app.core.db import utcnow
from app.main import create_app
from app.users.models import Role, User
from tests.conftest import make_settings
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import assert_problem

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

OPEN = {"comment_moderation": "none", "comment_flood_seconds": 0, "comment_rate_limit": ""}


def reply(**fields: Any) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8]
    body = {
        "author_name": "Reader",
        "author_email": f"reader-{n}@example.com",
        "content": f"A thoughtful reply {n}.",
    }
    body.update(fields)
    return body


def url(article: Article | int) -> str:
    return f"/api/v1/articles/{article if isinstance(article, int) else article.id}/comments"


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, role=Role.author)


@pytest.fixture
async def article(session: AsyncSession, author: User) -> Article:
    return await make_article(session, author)


@pytest.fixture
async def moderator_token(session: AsyncSession) -> str:
    editor = await make_user(session, role=Role.editor)
    return await make_token(session, editor)


async def count_of(session: AsyncSession, article_id: int) -> int:
    await session.commit()  # end this session's snapshot: read what the app committed
    value = await session.scalar(select(Article.comment_count).where(Article.id == article_id))
    assert value is not None
    return value


class TestPosting:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return OPEN

    async def test_a_reply_is_created_with_its_status_location_and_edit_token(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        response = await client.post(
            url(article),
            json=reply(author_name="  Farid  ", author_email="Farid.K@Example.COM"),
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "approved"
        assert body["author_name"] == "Farid"
        assert response.headers["location"] == f"/api/v1/comments/{body['id']}"
        assert body["edit_token"]
        assert "example.com" not in response.text.lower()
        stored = await session.get(Comment, body["id"])
        assert stored is not None
        assert stored.author_email == "farid.k@example.com"
        assert stored.edit_token_hash != body["edit_token"]
        assert await count_of(session, article.id) == 1

    async def test_content_becomes_safe_paragraphs_with_nofollow_links(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        text = "First <b>bold</b>\n\nSee https://example.org/x <script>alert(1)</script>\nend"
        body = (await client.post(url(article), json=reply(content=text))).json()
        assert body["content"].startswith("<p>First <b>bold</b></p><p>See <a href=")
        assert 'rel="nofollow ugc noopener"' in body["content"]
        assert "<script" not in body["content"]
        assert "<br>" in body["content"]

    async def test_internationalised_addresses_are_accepted(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        response = await client.post(url(article), json=reply(author_email="josé@bücher.example"))
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"author_email": None}, "author_email"),
            ({"author_email": "not-an-email"}, "author_email"),
            ({"author_email": "a@b"}, "author_email"),
            ({"author_name": "   "}, "author_name"),
            ({"author_name": "x" * 101}, "author_name"),
            ({"content": " \n\t "}, "content"),
            ({"content": "x" * 10_001}, "content"),
            ({"author_url": "javascript:alert(1)"}, "author_url"),
            # Longer than the column (was a 500 on PostgreSQL, stored on SQLite).
            ({"author_url": "https://example.com/" + "a" * 2040}, "author_url"),
            ({"status": "approved"}, "status"),
        ],
    )
    async def test_bad_input_names_the_field_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        change: dict[str, Any],
        field: str,
    ) -> None:
        payload = {k: v for k, v in {**reply(), **change}.items() if v is not None}
        response = await client.post(url(article), json=payload)
        body = assert_problem(response, 422)
        assert field in {e["field"] for e in body["errors"]}
        assert await session.scalar(select(Comment.id)) is None

    async def test_unknown_or_unpublished_article_is_a_404(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User
    ) -> None:
        draft = await make_article(session, author, status=ArticleStatus.draft)
        assert_problem(await client.post(url(99999), json=reply()), 404)
        assert_problem(await client.post(url(draft), json=reply()), 404)

    async def test_oversized_body_is_a_413_and_wrong_type_a_415(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        big = reply(content="x" * 70_000)
        assert_problem(await client.post(url(article), json=big), 413)
        text = await client.post(
            url(article), content=b"author_name=x", headers={"Content-Type": "text/plain"}
        )
        assert_problem(text, 415)
        assert await session.scalar(select(Comment.id)) is None

    async def test_parent_must_be_visible_on_the_same_article_and_not_too_deep(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User, article: Article
    ) -> None:
        other = await make_article(session, author)
        elsewhere = (await client.post(url(other), json=reply())).json()["id"]
        bad = await client.post(url(article), json=reply(parent_id=elsewhere))
        assert "parent_id" in {e["field"] for e in assert_problem(bad, 422)["errors"]}
        parent = None
        for depth in range(5):
            made = await client.post(url(article), json=reply(parent_id=parent))
            assert made.status_code == 201, made.text
            assert made.json()["depth"] == depth
            parent = made.json()["id"]
        too_deep = await client.post(url(article), json=reply(parent_id=parent))
        assert_problem(too_deep, 422)

    async def test_exact_duplicate_is_a_409(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        payload = reply()
        assert (await client.post(url(article), json=payload)).status_code == 201
        assert_problem(await client.post(url(article), json=payload), 409)

    async def test_closed_comments_are_refused_with_their_own_problem_type(
        self, client: httpx.AsyncClient, session: AsyncSession, author: User
    ) -> None:
        closed = await make_article(session, author, comment_status="closed")
        body = assert_problem(await client.post(url(closed), json=reply()), 403)
        assert body["type"].endswith("comments-closed")


class TestIdempotency:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**OPEN, "comment_flood_seconds": 15}

    async def test_a_retry_returns_the_first_answer_and_creates_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        payload = reply()
        headers = {"Idempotency-Key": "retry-1"}
        first = await client.post(url(article), json=payload, headers=headers)
        again = await client.post(url(article), json=payload, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        rows = (await session.scalars(select(Comment))).all()
        assert len(rows) == 1

    async def test_the_same_key_with_another_body_is_a_422(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        headers = {"Idempotency-Key": "retry-2"}
        assert (await client.post(url(article), json=reply(), headers=headers)).status_code == 201
        other = await client.post(url(article), json=reply(), headers=headers)
        assert_problem(other, 422)


class TestModerationRules:
    async def test_known_commenters_are_approved_others_held(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        app: Any,
        article: Article,
        moderator_token: str,
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"comment_flood_seconds": 0})
        first = await client.post(url(article), json=reply(author_email="new@example.com"))
        assert first.json()["status"] == "pending"
        assert await count_of(session, article.id) == 0
        approve = await client.patch(
            f"/api/v1/comments/{first.json()['id']}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        assert approve.status_code == 200
        assert await count_of(session, article.id) == 1
        second = await client.post(url(article), json=reply(author_email="new@example.com"))
        assert second.json()["status"] == "approved"
        assert await count_of(session, article.id) == 2

    @pytest.mark.parametrize(
        ("overrides", "payload", "expected"),
        [
            ({"comment_moderation": "all"}, {}, "pending"),
            ({"comment_moderation": "none"}, {}, "approved"),
            (
                {"comment_moderation": "none"},
                {"content": "see http://a.example http://b.example http://c.example"},
                "pending",
            ),
            (
                {"comment_moderation": "none", "comment_blocklist_words": ["casino"]},
                {"content": "Best CASINO bonus"},
                "spam",
            ),
            (
                {"comment_moderation": "none", "comment_blocklist_emails": ["@spam.example"]},
                {"author_email": "bot@spam.example"},
                "spam",
            ),
            (
                {"comment_moderation": "none", "comment_blocklist_ips": ["203.0.113.0/24"]},
                {},
                "spam",
            ),
            ({"comment_moderation": "none"}, {"website": "http://bot.example"}, "spam"),
        ],
    )
    async def test_rules(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        app: Any,
        article: Article,
        overrides: dict[str, Any],
        payload: dict[str, Any],
        expected: str,
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update=overrides)
        response = await client.post(url(article), json=reply(**payload))
        assert response.status_code == 201
        # Spam is answered like a held comment, so a bot learns nothing.
        assert response.json()["status"] == ("pending" if expected == "spam" else expected)
        stored = await session.get(Comment, response.json()["id"])
        assert stored is not None
        assert stored.status == expected


class TestFloodControl:
    async def test_the_same_email_must_wait_and_is_told_how_long(
        self, client: httpx.AsyncClient, app: Any, article: Article
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"comment_flood_seconds": 3})
        first = await client.post(url(article), json=reply(author_email="fast@example.com"))
        assert first.status_code == 201
        for header in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            assert header in first.headers
        assert int(first.headers["ratelimit-remaining"]) == 29
        transport = httpx.ASGITransport(app=client._transport.app, client=("198.51.100.9", 1))  # type: ignore[attr-defined]
        await asyncio.sleep(1.2)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as elsewhere:
            again = await elsewhere.post(url(article), json=reply(author_email="fast@example.com"))
        body = assert_problem(again, 429)
        wait = int(again.headers["retry-after"])
        assert 1 <= wait <= 2
        assert body["detail"].startswith(f"Wait {wait} second")

    async def test_readers_sharing_an_address_do_not_wait_for_each_other(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        # One carrier NAT: many readers, one address. Only the hourly limit is per address.
        for n in range(5):
            posted = await client.post(url(article), json=reply(author_email=f"r{n}@example.com"))
            assert posted.status_code == 201, posted.text
        assert int(posted.headers["ratelimit-remaining"]) == 25

    @pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
    async def test_parallel_posts_from_one_email_get_one_slot(
        self, database_url: str, article: Article, shared: bool
    ) -> None:
        overrides: dict[str, Any] = {"comment_moderation": "none"}
        if shared:
            overrides |= {"redis_url": REDIS_URL, "redis_prefix": f"test-{uuid.uuid4().hex}"}
        service = create_app(make_settings(database_url, **overrides))
        async with LifespanManager(service):
            transport = httpx.ASGITransport(app=service, client=("203.0.113.50", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answers = await asyncio.gather(
                    *(
                        client.post(url(article), json=reply(author_email="burst@example.com"))
                        for _ in range(10)
                    )
                )
        assert sorted(a.status_code for a in answers) == [201] + [429] * 9

    async def test_hourly_limit_per_address(
        self, client: httpx.AsyncClient, app: Any, article: Article
    ) -> None:
        app.state.settings = app.state.settings.model_copy(
            update={"comment_flood_seconds": 0, "comment_rate_limit": "2/hour"}
        )
        assert (await client.post(url(article), json=reply())).status_code == 201
        assert (await client.post(url(article), json=reply())).status_code == 201
        third = await client.post(url(article), json=reply())
        assert_problem(third, 429)
        assert int(third.headers["retry-after"]) > 60


class TestEditToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**OPEN, "comment_moderation": "all"}

    async def test_the_commenter_reads_edits_and_deletes_their_own_comment(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        made = (await client.post(url(article), json=reply())).json()
        mine = {"X-Comment-Token": made["edit_token"]}
        path = f"/api/v1/comments/{made['id']}"
        assert (await client.get(path)).status_code == 404, "pending is not public"
        own = await client.get(path, headers=mine)
        assert own.status_code == 200
        assert own.json()["status"] == "pending"
        assert own.headers["cache-control"] == "private, no-store"
        edited = await client.patch(path, json={"content": "Better words"}, headers=mine)
        assert edited.status_code == 200
        assert edited.json()["content"] == "<p>Better words</p>"
        assert (
            await client.patch(path, json={"status": "approved"}, headers=mine)
        ).status_code == 403
        wrong = {"X-Comment-Token": "not-the-token"}
        assert (await client.patch(path, json={"content": "x"}, headers=wrong)).status_code == 404
        assert (await client.delete(path, headers=mine)).status_code == 204
        assert (await client.get(path, headers=mine)).status_code == 404

    async def test_the_edit_token_expires(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        made = (await client.post(url(article), json=reply())).json()
        await session.execute(
            update(Comment)
            .where(Comment.id == made["id"])
            .values(edit_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        mine = {"X-Comment-Token": made["edit_token"]}
        path = f"/api/v1/comments/{made['id']}"
        late = await client.patch(path, json={"content": "too late"}, headers=mine)
        assert assert_problem(late, 403)["type"].endswith("edit-window-closed")
        assert_problem(await client.delete(path, headers=mine), 403)


class TestReading:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return OPEN

    async def post(self, client: httpx.AsyncClient, article: Article, **fields: Any) -> int:
        response = await client.post(url(article), json=reply(**fields))
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def test_threads_are_paged_whole_and_ordered(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        a = await self.post(client, article, content="a")
        a1 = await self.post(client, article, content="a1", parent_id=a)
        b = await self.post(client, article, content="b")
        a2 = await self.post(client, article, content="a2", parent_id=a)
        a11 = await self.post(client, article, content="a11", parent_id=a1)
        c = await self.post(client, article, content="c")
        page1 = (await client.get(f"{url(article)}?per_page=2")).json()
        assert [i["id"] for i in page1["items"]] == [a, a1, a11, a2, b]
        assert [i["depth"] for i in page1["items"]] == [0, 1, 2, 1, 0]
        assert page1["items"][2]["parent_id"] == a1
        assert (page1["total"], page1["pages"]) == (3, 2)
        page2 = (await client.get(f"{url(article)}?per_page=2&page=2")).json()
        assert [i["id"] for i in page2["items"]] == [c]
        newest = (await client.get(f"{url(article)}?order=newest")).json()
        assert [i["id"] for i in newest["items"] if i["depth"] == 0] == [c, b, a]
        tree = (await client.get(f"{url(article)}?tree=true")).json()
        assert [t["id"] for t in tree["items"]] == [a, b, c]
        assert [r["id"] for r in tree["items"][0]["replies"]] == [a1, a2]
        assert tree["items"][0]["replies"][0]["replies"][0]["id"] == a11

    async def test_fields_trim_every_comment_and_an_unknown_field_is_422(
        self, client: httpx.AsyncClient, article: Article
    ) -> None:
        a = await self.post(client, article, content="a")
        a1 = await self.post(client, article, content="a1", parent_id=a)
        await self.post(client, article, content="a11", parent_id=a1)
        flat = (await client.get(url(article), params={"fields": "id,depth"})).json()
        assert [set(i) for i in flat["items"]] == [{"id", "depth"}] * 3
        assert flat["total"] == 1
        tree = await client.get(url(article), params={"tree": "true", "fields": "id,replies"})
        assert tree.status_code == 200
        top = tree.json()["items"][0]
        assert set(top) == {"id", "replies"}
        assert set(top["replies"][0]) == {"id", "replies"}
        assert set(top["replies"][0]["replies"][0]) == {"id", "replies"}
        no_replies = await client.get(url(article), params={"tree": "true", "fields": "id"})
        assert no_replies.json()["items"] == [{"id": a}]
        for bad in ({"fields": "bogus"}, {"fields": "id,replies"}, {"fields": ","}):
            problem = assert_problem(await client.get(url(article), params=bad), 422)
            assert problem["errors"][0]["field"] == "fields"

    async def test_removed_parent_with_visible_replies_is_a_placeholder(
        self, client: httpx.AsyncClient, article: Article, moderator_token: str
    ) -> None:
        parent = await self.post(client, article, author_name="Gone", content="gone soon")
        child = await self.post(client, article, content="still here", parent_id=parent)
        lonely = await self.post(client, article, content="removed too")
        for comment_id in (parent, lonely):
            deleted = await client.delete(
                f"/api/v1/comments/{comment_id}", headers=bearer(moderator_token)
            )
            assert deleted.status_code == 204
        items = (await client.get(url(article))).json()["items"]
        assert [i["id"] for i in items] == [parent, child]
        assert items[0] == {**items[0], "removed": True, "author_name": None, "content": None}
        assert "gone soon" not in str(items)
        assert items[1]["removed"] is False

    async def test_only_approved_comments_are_shown_and_counted(
        self, client: httpx.AsyncClient, session: AsyncSession, app: Any, article: Article
    ) -> None:
        await self.post(client, article)
        app.state.settings = app.state.settings.model_copy(update={"comment_moderation": "all"})
        await self.post(client, article)
        listing = (await client.get(url(article))).json()
        assert listing["total"] == 1
        shown = (await client.get(f"/api/v1/articles/{article.id}")).json()
        assert shown["comment_count"] == 1


class TestModeration:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**OPEN, "comment_moderation": "all"}

    async def test_the_queue_shows_private_fields_to_moderators_only(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        await client.post(
            url(article),
            json=reply(author_email="queue@example.com"),
            headers={"User-Agent": "UA/1"},
        )
        queue = await client.get("/api/v1/comments?status=pending", headers=bearer(moderator_token))
        assert queue.status_code == 200
        item = queue.json()["items"][0]
        assert item["author_email"] == "queue@example.com"
        assert item["ip_address"] == "203.0.113.7"
        assert item["user_agent"] == "UA/1"
        assert queue.headers["cache-control"] == "private, no-store"
        found = await client.get("/api/v1/comments?q=queue@", headers=bearer(moderator_token))
        assert found.json()["total"] == 1
        by_article = await client.get(
            f"/api/v1/comments?article={article.id + 1}", headers=bearer(moderator_token)
        )
        assert by_article.json()["total"] == 0
        assert (await client.get("/api/v1/comments")).status_code == 401
        author = await make_user(session, role=Role.author)
        assert (
            await client.get("/api/v1/comments", headers=bearer(await make_token(session, author)))
        ).status_code == 403

    async def test_a_moderation_only_token_can_moderate(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        narrow = await make_token(session, admin, scopes=["comments:moderate"])
        made = (await client.post(url(article), json=reply())).json()
        response = await client.patch(
            f"/api/v1/comments/{made['id']}", json={"status": "approved"}, headers=bearer(narrow)
        )
        assert response.status_code == 200

    async def test_approving_a_reply_leaves_its_pending_parent_alone(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        parent = (await client.post(url(article), json=reply())).json()["id"]
        await client.patch(
            f"/api/v1/comments/{parent}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        child = (await client.post(url(article), json=reply(parent_id=parent))).json()["id"]
        await client.patch(
            f"/api/v1/comments/{parent}",
            json={"status": "pending"},
            headers=bearer(moderator_token),
        )
        await client.patch(
            f"/api/v1/comments/{child}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        assert (await session.get(Comment, parent, populate_existing=True)).status == "pending"  # type: ignore[union-attr]
        assert await count_of(session, article.id) == 1
        items = (await client.get(url(article))).json()["items"]
        assert [(i["id"], i["removed"]) for i in items] == [(parent, True), (child, False)]

    async def test_delete_trashes_then_removes_for_good(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        made = (await client.post(url(article), json=reply())).json()["id"]
        path = f"/api/v1/comments/{made}"
        assert (await client.delete(path, headers=bearer(moderator_token))).status_code == 204
        assert (await session.get(Comment, made, populate_existing=True)).status == "trash"  # type: ignore[union-attr]
        assert (await client.delete(path, headers=bearer(moderator_token))).status_code == 204
        session.expire_all()
        assert await session.get(Comment, made) is None

    async def test_bulk_actions(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        ids = [(await client.post(url(article), json=reply())).json()["id"] for _ in range(3)]
        response = await client.post(
            "/api/v1/comments/bulk",
            json={"ids": [*ids, 99999], "action": "approve"},
            headers=bearer(moderator_token),
        )
        assert response.json() == {"changed": ids, "not_found": [99999]}
        assert await count_of(session, article.id) == 3
        spam = await client.post(
            "/api/v1/comments/bulk",
            json={"ids": ids[:2], "action": "spam"},
            headers=bearer(moderator_token),
        )
        assert spam.status_code == 200
        assert await count_of(session, article.id) == 1


class TestPrivacyRequests:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return OPEN

    async def test_export_and_erase_by_email(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        for text in ("one", "two"):
            await client.post(
                url(article),
                json=reply(author_email="me@example.com", content=text, author_name="Me"),
            )
        await client.post(url(article), json=reply())
        exported = await client.get(
            "/api/v1/privacy/comments", params={"email": "ME@example.com"}, headers=bearer(token)
        )
        assert [c["content_source"] for c in exported.json()] == ["one", "two"]
        assert exported.json()[0]["ip_address"] == "203.0.113.7"
        erased = await client.post(
            "/api/v1/privacy/comments/erase",
            json={"email": "me@example.com", "delete_content": True},
            headers=bearer(token),
        )
        assert erased.json() == {"comments": 2}
        rows = (
            await session.scalars(select(Comment).execution_options(populate_existing=True))
        ).all()
        mine = [c for c in rows if c.author_name == "Anonymous"]
        assert len(mine) == 2
        assert all(c.author_email is None and c.ip_address is None for c in mine)
        assert all(c.content_source == "" for c in mine)
        assert await count_of(session, article.id) == 1
        editor = await make_user(session, role=Role.editor)
        not_admin = await client.get(
            "/api/v1/privacy/comments",
            params={"email": "x@example.com"},
            headers=bearer(await make_token(session, editor)),
        )
        assert not_admin.status_code == 403

    async def test_ip_and_user_agent_are_anonymised_after_retention(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        old = (await client.post(url(article), json=reply())).json()["id"]
        new = (await client.post(url(article), json=reply())).json()["id"]
        await session.execute(
            update(Comment)
            .where(Comment.id == old)
            .values(created_at=utcnow() - timedelta(days=31))
        )
        await session.commit()
        assert await comments.anonymise_old(session, 30) == 1
        await session.commit()
        session.expire_all()
        old_row = await session.get(Comment, old)
        new_row = await session.get(Comment, new)
        assert old_row is not None
        assert new_row is not None
        assert (old_row.ip_address, old_row.user_agent) == (None, None)
        assert new_row.ip_address == "203.0.113.7"


@pytest.mark.postgres_only
class TestConcurrentCount:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**OPEN, "db_pool_size": 20}

    async def test_count_stays_exact_under_parallel_posts_and_moderation(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        posts = await asyncio.gather(*(client.post(url(article), json=reply()) for _ in range(40)))
        assert all(p.status_code == 201 for p in posts)
        ids = [p.json()["id"] for p in posts]
        actions = [
            client.patch(
                f"/api/v1/comments/{cid}",
                json={"status": "spam" if i % 3 else "approved"},
                headers=bearer(moderator_token),
            )
            for i, cid in enumerate(ids)
        ] + [client.post(url(article), json=reply()) for _ in range(20)]
        results = await asyncio.gather(*actions)
        assert all(r.status_code in (200, 201) for r in results), [r.status_code for r in results]
        approved = await session.scalar(
            select(Comment.id)
            .where(Comment.status == CommentState.approved)
            .with_only_columns(__import__("sqlalchemy").func.count())
        )
        assert await count_of(session, article.id) == approved
        assert approved == 14 + 20


async def from_address(client: httpx.AsyncClient, address: str) -> httpx.AsyncClient:
    """Another reader's client: the same app, another client address."""
    transport = httpx.ASGITransport(app=client._transport.app, client=(address, 1))  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=transport, base_url="http://t")


class TestNoEmailOracle:
    """A poster who knows a comment's text and guesses emails learns nothing from the
    answers: limits count every attempt first, and a duplicate is only a duplicate for the
    client that posted the first copy."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"comment_moderation": "all", "comment_flood_seconds": 0, "comment_rate_limit": ""}

    async def test_limits_count_every_guess_before_any_check_of_stored_comments(
        self, client: httpx.AsyncClient, app: Any, article: Article
    ) -> None:
        victim = reply(author_email="victim@example.com")
        assert (await client.post(url(article), json=victim)).status_code == 201
        app.state.settings = app.state.settings.model_copy(update={"comment_rate_limit": "2/hour"})
        guesses = ["guess-1@example.com", "victim@example.com", "guess-2@example.com"]
        async with await from_address(client, "198.51.100.20") as attacker:
            answers = [
                (await attacker.post(url(article), json={**victim, "author_email": g})).status_code
                for g in guesses
            ]
        assert answers == [201, 201, 429]

    async def test_a_duplicate_answers_the_same_whichever_email_wrote_the_first_copy(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        victim = reply(author_email="victim@example.com")
        assert (await client.post(url(article), json=victim)).status_code == 201
        async with await from_address(client, "198.51.100.21") as attacker:
            right = await attacker.post(url(article), json=victim)
            wrong = await attacker.post(
                url(article), json={**victim, "author_email": "guess@example.com"}
            )
        assert right.status_code == wrong.status_code == 201
        assert right.json()["status"] == wrong.json()["status"] == "pending"
        assert right.json().keys() == wrong.json().keys()
        # The poster's own second copy, from where the first came, is still refused.
        assert_problem(await client.post(url(article), json=victim), 409)
        stored = (await session.scalars(select(Comment.author_email))).all()
        assert sorted(stored) == ["guess@example.com", "victim@example.com", "victim@example.com"]


class TestKnownCommenters:
    async def test_known_means_the_email_with_the_name_it_was_approved_under(
        self,
        client: httpx.AsyncClient,
        app: Any,
        article: Article,
        moderator_token: str,
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"comment_flood_seconds": 0})
        first = await client.post(
            url(article), json=reply(author_name="Farid", author_email="f@example.com")
        )
        assert first.json()["status"] == "pending"
        approved = await client.patch(
            f"/api/v1/comments/{first.json()['id']}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        assert approved.status_code == 200
        same = await client.post(
            url(article), json=reply(author_name="Farid", author_email="f@example.com")
        )
        assert same.json()["status"] == "approved"
        other = await client.post(
            url(article), json=reply(author_name="Editor in chief", author_email="f@example.com")
        )
        assert other.json()["status"] == "pending"


class TestStaffNames:
    """A reader's comment under a staff member's name (display name or login, whatever the
    case, width or spacing) waits for a moderator, even with moderation off."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return OPEN

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("Jane Doe", "pending"),
            ("jane doe", "pending"),
            ("  JANE   DOE ", "pending"),
            ("Ｊａｎｅ　Ｄｏｅ", "pending"),  # fullwidth letters and space (NFKC)
            ("Jane\u200b Doe", "pending"),  # a zero-width space
            ("Jáne Doe", "pending"),  # an accent
            ("JDoe_desk", "pending"),  # the login name
            ("jdoe desk", "pending"),
            ("Jane Doetown", "approved"),
            ("Old Hand", "approved"),  # an account that was deactivated
        ],
    )
    async def test_names_that_imitate_staff_are_held(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        name: str,
        expected: str,
    ) -> None:
        await make_user(session, role=Role.editor, username="JDoe_desk", display_name="Jane Doe")
        former = await make_user(session, role=Role.author, display_name="Old Hand")
        former.is_active = False
        await session.commit()
        response = await client.post(url(article), json=reply(author_name=name))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == expected

    async def test_staff_signed_in_use_their_name_and_are_marked(
        self, client: httpx.AsyncClient, session: AsyncSession, article: Article
    ) -> None:
        jane = await make_user(session, role=Role.author, display_name="Jane Doe")
        token = await make_token(session, jane)
        signed = await client.post(
            url(article), json=reply(author_name="Jane Doe"), headers=bearer(token)
        )
        assert signed.status_code == 201, signed.text
        assert (signed.json()["status"], signed.json()["staff"]) == ("approved", True)
        reader = await client.post(url(article), json=reply(author_name="Sam"))
        assert reader.json()["staff"] is False
        listed = (await client.get(url(article))).json()["items"]
        assert [(c["author_name"], c["staff"]) for c in listed] == [
            ("Jane Doe", True),
            ("Sam", False),
        ]
        tree = (await client.get(url(article), params={"tree": "true"})).json()["items"]
        assert [c["staff"] for c in tree] == [True, False]
        # A bad token is no way around the rule: it is refused, not treated as a reader.
        forged = await client.post(
            url(article), json=reply(author_name="Jane Doe"), headers=bearer("nws_forged")
        )
        assert forged.status_code == 401


class TestEditsAfterApproval:
    """An edit of an approved comment goes through the rules a new comment meets."""

    async def test_an_approved_comment_edited_goes_back_to_moderation(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        app: Any,
        article: Article,
        moderator_token: str,
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"comment_flood_seconds": 0})
        made = (await client.post(url(article), json=reply())).json()
        assert made["status"] == "pending"
        path = f"/api/v1/comments/{made['id']}"
        approve = await client.patch(
            path, json={"status": "approved"}, headers=bearer(moderator_token)
        )
        assert approve.status_code == 200
        assert await count_of(session, article.id) == 1
        mine = {"X-Comment-Token": made["edit_token"]}
        edited = await client.patch(path, json={"content": "Now with other words"}, headers=mine)
        assert edited.status_code == 200
        assert edited.json()["status"] == "pending"
        assert (await client.get(path)).status_code == 404
        assert await count_of(session, article.id) == 0

    async def test_a_known_commenters_edit_stays_approved(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        app: Any,
        article: Article,
        moderator_token: str,
    ) -> None:
        app.state.settings = app.state.settings.model_copy(update={"comment_flood_seconds": 0})
        who = {"author_name": "Mina", "author_email": "mina@example.com"}
        first = (await client.post(url(article), json=reply(**who))).json()
        await client.patch(
            f"/api/v1/comments/{first['id']}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        second = (await client.post(url(article), json=reply(**who))).json()
        assert second["status"] == "approved"
        mine = {"X-Comment-Token": second["edit_token"]}
        path = f"/api/v1/comments/{second['id']}"
        edited = await client.patch(path, json={"content": "A typo fixed"}, headers=mine)
        assert edited.json()["status"] == "approved"
        spammy = await client.patch(
            path,
            json={"content": "http://a.example http://b.example http://c.example"},
            headers=mine,
        )
        assert spammy.json()["status"] == "pending"
        assert await count_of(session, article.id) == 1

    async def test_an_edit_never_approves_a_held_comment(
        self, client: httpx.AsyncClient, app: Any, article: Article
    ) -> None:
        app.state.settings = app.state.settings.model_copy(
            update={"comment_flood_seconds": 0, "comment_moderation": "none"}
        )
        links = "http://a.example http://b.example http://c.example"
        made = (await client.post(url(article), json=reply(content=links))).json()
        assert made["status"] == "pending"
        mine = {"X-Comment-Token": made["edit_token"]}
        edited = await client.patch(
            f"/api/v1/comments/{made['id']}", json={"content": "No links now"}, headers=mine
        )
        assert edited.json()["status"] == "pending"
