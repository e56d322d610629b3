"""Notification email through the outbox, read back from a real local SMTP server (aiosmtpd):
moderators hear of held comments, commenters of approved replies when they asked, and the
one-click unsubscribe link works."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.comments.models import Comment
from app.core.db import utcnow
from app.outbox import worker
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus
from app.users.models import Role, User
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import Inbox, assert_problem, free_port

SITE = "https://news.example"
QUIET = {
    "webhook_worker": False,
    "comment_flood_seconds": 0,
    "comment_rate_limit": "",
    "site_url": SITE,
}


async def send_all(app: FastAPI) -> int:
    return await worker.process_due(app.state.sessionmaker, app.state.settings)


async def mails(app: FastAPI) -> list[Delivery]:
    async with app.state.sessionmaker() as s:
        rows = await s.scalars(
            select(Delivery)
            .where(Delivery.kind == DeliveryKind.email)
            .order_by(Delivery.created_at)
        )
        return list(rows)


def reply(**fields: Any) -> dict[str, Any]:
    body = {
        "author_name": "Reader",
        "author_email": f"reader-{uuid.uuid4().hex[:8]}@example.com",
        "content": f"A thought {uuid.uuid4().hex[:8]}.",
    }
    return body | fields


def comments_url(article: Article) -> str:
    return f"/api/v1/articles/{article.id}/comments"


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, role=Role.author, email="author@newsroom.example")


@pytest.fixture
async def article(session: AsyncSession, author: User) -> Article:
    return await make_article(session, author, title="Budget day")


@pytest.fixture
async def moderator_token(session: AsyncSession) -> str:
    """An editor without an email address: moderates, gets no mail."""
    return await make_token(session, await make_user(session, role=Role.editor))


class TestModeratorMail:
    @pytest.fixture
    def settings_overrides(self, inbox: Inbox) -> dict[str, Any]:
        return {**QUIET, "comment_moderation": "all", "smtp_url": f"smtp://127.0.0.1:{inbox.port}"}

    async def test_a_held_comment_mails_active_editors_and_admins_with_an_address(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        inbox: Inbox,
        article: Article,
    ) -> None:
        await make_user(session, role=Role.editor, email="desk@newsroom.example")
        await make_user(session, role=Role.admin, email="chief@newsroom.example")
        await make_user(session, role=Role.editor)  # no address
        gone = await make_user(session, role=Role.editor, email="former@newsroom.example")
        gone.is_active = False
        await session.commit()
        response = await client.post(
            comments_url(article),
            json=reply(author_email="held@example.com", content="Please read this."),
            headers={"User-Agent": "PrivateAgent/9.9"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"

        assert await send_all(app) == 2
        assert sorted(m["To"] for m in inbox.messages) == [
            "chief@newsroom.example",
            "desk@newsroom.example",
        ]
        (mail,) = inbox.to("desk@newsroom.example")
        assert "Budget day" in mail["Subject"]
        assert mail["From"] == "Newsroom <newsroom@localhost>"
        body = mail.get_content()
        assert "held@example.com" in body  # moderators see it anyway
        assert "Please read this." in body
        assert "203.0.113.7" not in mail.as_string()
        assert "PrivateAgent" not in mail.as_string()
        assert {d.status for d in await mails(app)} == {DeliveryStatus.succeeded}
        assert {d.payload for d in await mails(app)} == {""}, "sent mail is not kept"

    async def test_spam_mails_nobody(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        await make_user(session, role=Role.editor, email="desk@newsroom.example")
        spam = await client.post(comments_url(article), json=reply(website="http://spam.example"))
        assert spam.status_code == 201
        assert await mails(app) == []


class TestReplyMail:
    @pytest.fixture
    def settings_overrides(self, inbox: Inbox) -> dict[str, Any]:
        return {**QUIET, "comment_moderation": "all", "smtp_url": f"smtp://127.0.0.1:{inbox.port}"}

    async def approve(self, client: httpx.AsyncClient, token: str, comment_id: int) -> None:
        response = await client.patch(
            f"/api/v1/comments/{comment_id}", json={"status": "approved"}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text

    async def post(self, client: httpx.AsyncClient, article: Article, **fields: Any) -> int:
        response = await client.post(comments_url(article), json=reply(**fields))
        assert response.status_code == 201, response.text
        comment_id: int = response.json()["id"]
        return comment_id

    async def test_reply_mail_only_when_asked_once_approved_then_one_click_unsubscribe(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        inbox: Inbox,
        article: Article,
        moderator_token: str,
    ) -> None:
        asker = "asker@example.com"
        first = await self.post(client, article, author_email=asker, notify_replies=True)
        other = await self.post(client, article, author_email=asker, content="Second thought.")
        await self.approve(client, moderator_token, first)
        await self.approve(client, moderator_token, other)

        answer = await self.post(
            client,
            article,
            parent_id=first,
            author_name="Farid",
            author_email="replier@example.com",
            content="I disagree, politely.",
        )
        await send_all(app)
        assert inbox.to(asker) == [], "not before the reply is approved"

        await self.approve(client, moderator_token, answer)
        await send_all(app)
        (mail,) = inbox.to(asker)
        assert "Budget day" in mail["Subject"]
        text = mail.get_content()
        assert "Farid" in text
        assert "I disagree, politely." in text
        assert "replier@example.com" not in mail.as_string()
        assert f"{SITE}/budget-day#comment-{answer}" in text
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = mail["List-Unsubscribe"].strip("<>")
        assert link.startswith(f"{SITE}/api/v1/comments/unsubscribe?token=")
        assert link in text

        # Held and approved again: announced once only.
        hold = await client.patch(
            f"/api/v1/comments/{answer}",
            json={"status": "pending"},
            headers=bearer(moderator_token),
        )
        assert hold.status_code == 200
        await self.approve(client, moderator_token, answer)
        await send_all(app)
        assert len(inbox.to(asker)) == 1

        parts = urlsplit(link)
        response = await client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "will not email you" in response.text
        await session.commit()
        flags = await session.scalars(
            select(Comment.notify_replies).where(Comment.author_email == asker)
        )
        assert set(flags) == {False}

        again = await self.post(client, article, parent_id=first, content="Me too!")
        await self.approve(client, moderator_token, again)
        await send_all(app)
        assert len(inbox.to(asker)) == 1, "no mail after unsubscribing"

    async def test_no_mail_for_those_who_did_not_ask_or_reply_to_themselves(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        inbox: Inbox,
        article: Article,
        moderator_token: str,
    ) -> None:
        quiet = await self.post(client, article, author_email="quiet@example.com")
        asker = await self.post(
            client, article, author_email="self@example.com", notify_replies=True
        )
        await self.approve(client, moderator_token, quiet)
        await self.approve(client, moderator_token, asker)
        to_quiet = await self.post(client, article, parent_id=quiet)
        to_self = await self.post(client, article, parent_id=asker, author_email="self@example.com")
        await self.approve(client, moderator_token, to_quiet)
        await self.approve(client, moderator_token, to_self)
        await send_all(app)
        assert inbox.messages == []
        assert await mails(app) == []

    async def test_one_click_post_and_bad_tokens(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        inbox: Inbox,
        article: Article,
        moderator_token: str,
    ) -> None:
        first = await self.post(
            client, article, author_email="clicker@example.com", notify_replies=True
        )
        await self.approve(client, moderator_token, first)
        answer = await self.post(client, article, parent_id=first)
        await self.approve(client, moderator_token, answer)
        await send_all(app)
        (mail,) = inbox.to("clicker@example.com")
        parts = urlsplit(mail["List-Unsubscribe"].strip("<>"))
        # What a mail client sends (RFC 8058).
        response = await client.post(
            f"{parts.path}?{parts.query}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
        await session.commit()
        assert (
            await session.scalar(select(Comment.notify_replies).where(Comment.id == first)) is False
        )

        bad = await client.get("/api/v1/comments/unsubscribe?token=" + "x" * 43)
        assert_problem(bad, 404)
        assert_problem(await client.get("/api/v1/comments/unsubscribe"), 422)


class TestReplyMailOnPosting:
    """A reply approved as it is posted is announced by the post itself."""

    @pytest.fixture
    def settings_overrides(self, inbox: Inbox) -> dict[str, Any]:
        return {**QUIET, "comment_moderation": "none", "smtp_url": f"smtp://127.0.0.1:{inbox.port}"}

    async def test_the_reply_is_announced_once_and_its_link_unsubscribes(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        inbox: Inbox,
        article: Article,
    ) -> None:
        asker = "early@example.com"
        first = await client.post(
            comments_url(article), json=reply(author_email=asker, notify_replies=True)
        )
        assert first.json()["status"] == "approved"
        answer = await client.post(comments_url(article), json=reply(parent_id=first.json()["id"]))
        assert answer.json()["status"] == "approved"
        await send_all(app)
        (mail,) = inbox.to(asker)
        # The link's token is found through the digest the post stored on the reply.
        parts = urlsplit(mail["List-Unsubscribe"].strip("<>"))
        response = await client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 200, response.text
        await session.commit()
        wish = select(Comment.notify_replies).where(Comment.id == first.json()["id"])
        assert await session.scalar(wish) is False


class TestSmtpDown:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        closed = free_port()  # nothing listens there
        return {**QUIET, "comment_moderation": "all", "smtp_url": f"smtp://127.0.0.1:{closed}"}

    async def test_the_post_succeeds_and_the_mail_is_retried_later(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
    ) -> None:
        await make_user(session, role=Role.editor, email="desk@newsroom.example")
        response = await client.post(comments_url(article), json=reply())
        assert response.status_code == 201, response.text
        before = utcnow()
        assert await send_all(app) == 1
        (delivery,) = await mails(app)
        assert delivery.status == DeliveryStatus.failed
        assert delivery.attempts == 1
        assert delivery.last_error
        assert delivery.next_attempt_at is not None
        assert delivery.next_attempt_at > before
        assert await send_all(app) == 0, "not before its next attempt"
        assert delivery.payload, "kept until it is sent"


class TestNoSmtp:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {**QUIET, "comment_moderation": "all"}

    async def test_nothing_is_queued_and_nothing_fails(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        article: Article,
        moderator_token: str,
    ) -> None:
        await make_user(session, role=Role.editor, email="desk@newsroom.example")
        first = await client.post(comments_url(article), json=reply(notify_replies=True))
        assert first.status_code == 201
        approved = await client.patch(
            f"/api/v1/comments/{first.json()['id']}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        assert approved.status_code == 200
        answer = await client.post(comments_url(article), json=reply(parent_id=first.json()["id"]))
        assert answer.status_code == 201
        await client.patch(
            f"/api/v1/comments/{answer.json()['id']}",
            json={"status": "approved"},
            headers=bearer(moderator_token),
        )
        assert await mails(app) == []
        assert await send_all(app) == 0
