"""Notification email, queued in the outbox: moderators hear of comments held for moderation,
commenters who asked for it hear of approved replies, and one click stops the latter."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.comments.models import Comment
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import NotFound
from app.core.urls import article_url
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus
from app.users.models import Role, User

UNSUBSCRIBE_PATH = "/api/v1/comments/unsubscribe"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def enqueue(
    session: AsyncSession,
    *,
    event: str,
    to: str,
    subject: str,
    text: str,
    headers: dict[str, str] | None = None,
) -> Delivery:
    """Queue one email in the caller's transaction (the worker sends it)."""
    now = utcnow()
    payload: dict[str, Any] = {
        "to": to,
        "subject": " ".join(subject.split()),  # one line: a header cannot break
        "text": text,
        "headers": headers or {},
    }
    delivery = Delivery(
        kind=DeliveryKind.email,
        event=event,
        payload=orjson.dumps(payload).decode(),
        status=DeliveryStatus.pending,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    return delivery


def _comment_link(article: Article, comment: Comment, settings: Settings) -> str:
    url = article_url(settings, article_id=article.id, slug=article.slug, number=article.number)
    return f"{url}#comment-{comment.id}"


async def tell_moderators(session: AsyncSession, comment: Comment, settings: Settings) -> int:
    """A comment is held: one email to each active editor and admin with an address. It may
    show the commenter's email (moderators see it anyway), never their IP address."""
    if settings.smtp_url is None:
        return 0
    recipients = list(
        await session.scalars(
            select(User.email)
            .where(
                User.is_active.is_(True),
                User.role.in_([Role.editor, Role.admin]),
                User.email.is_not(None),
            )
            .order_by(User.id)
        )
    )
    if not recipients:
        return 0
    article = await session.get(Article, comment.article_id)
    assert article is not None
    website = f"\nWebsite: {comment.author_url}" if comment.author_url else ""
    text = (
        f"A comment on “{article.title}” is waiting for moderation.\n\n"
        f"From: {comment.author_name} <{comment.author_email}>{website}\n\n"
        f"{comment.content_source}\n\n"
        f"Article: {_comment_link(article, comment, settings)}\n"
        f"Moderation queue: {settings.site_url}/api/v1/comments?status=pending "
        f"(comment {comment.id})\n"
    )
    subject = f"[{settings.site_name}] Comment awaiting moderation: {article.title}"
    for to in recipients:
        if to:
            enqueue(session, event="mail.moderation", to=to, subject=subject, text=text)
    return len(recipients)


async def tell_replied_to(session: AsyncSession, reply: Comment, settings: Settings) -> bool:
    """An approved reply: tell the author of the comment it answers, if they asked to be
    told, once per reply. The email never shows the replier's address.

    Each email carries its own random unsubscribe token; its digest is kept on the reply it
    announces (one email per reply), so every link ever sent keeps working, and a reply
    held and approved again is not announced twice."""
    if settings.smtp_url is None or reply.parent_id is None or reply.unsubscribe_token_hash:
        return False
    parent = await session.get(Comment, reply.parent_id)
    if parent is None or not parent.notify_replies or not parent.author_email:
        return False
    if parent.author_email == reply.author_email:
        return False  # answering oneself
    article = await session.get(Article, reply.article_id)
    assert article is not None
    token = secrets.token_urlsafe(32)
    reply.unsubscribe_token_hash = _hash(token)
    unsubscribe = f"{settings.site_url}{UNSUBSCRIBE_PATH}?{urlencode({'token': token})}"
    text = (
        f"Hello {parent.author_name},\n\n"
        f"{reply.author_name} replied to your comment on “{article.title}”:\n\n"
        f"{reply.content_source}\n\n"
        f"Read the conversation: {_comment_link(article, reply, settings)}\n\n"
        "You get this email because you asked to hear about replies to your comments.\n"
        f"Stop these emails: {unsubscribe}\n"
    )
    enqueue(
        session,
        event="mail.reply",
        to=parent.author_email,
        subject=f"[{settings.site_name}] New reply to your comment on “{article.title}”",
        text=text,
        # RFC 2369 and RFC 8058: mail clients offer a one-click "unsubscribe" button.
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    return True


async def unsubscribe(session: AsyncSession, token: str) -> int:
    """Stop reply notifications for every comment of the address the link was sent to.
    Returns how many comments changed (0 when already unsubscribed)."""
    reply = await session.scalar(
        select(Comment).where(Comment.unsubscribe_token_hash == _hash(token))
    )
    parent = None
    if reply is not None and reply.parent_id is not None:
        parent = await session.get(Comment, reply.parent_id)
    if parent is None:
        raise NotFound("This unsubscribe link is not valid.")
    email = parent.author_email
    if email is None:
        return 0  # the address was erased meanwhile: nothing left to stop
    result = await session.execute(
        update(Comment)
        .where(Comment.author_email == email, Comment.notify_replies.is_(True))
        .values(notify_replies=False)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
