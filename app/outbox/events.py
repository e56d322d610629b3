"""What the newsroom's writes mean to the outside world: article and comment events become
webhook deliveries and notification emails, queued in the transaction of the change.

The articles and comments services call these at the points where a change happens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.articles.queries import LIVE
from app.comments.models import Comment, CommentState
from app.core.config import Settings
from app.core.db import utcnow
from app.core.urls import article_url
from app.mail import service as mail
from app.outbox.service import settings_of
from app.webhooks import service as webhooks

# Where an article stands for readers: public now, announced for later, or not public.
Visibility = Literal["live", "scheduled"] | None

# (before, after) → the event. A scheduled article has no write when its time comes, so it
# is announced (article.published, with its future published_at) by the write that
# scheduled it; taking a public article back to a future time unpublishes it.
_ARTICLE_EVENTS: dict[tuple[Visibility, Visibility], str] = {
    (None, "live"): "article.published",
    (None, "scheduled"): "article.published",
    ("scheduled", "live"): "article.published",
    ("live", "live"): "article.updated",
    ("scheduled", "scheduled"): "article.updated",
    ("live", None): "article.unpublished",
    ("live", "scheduled"): "article.unpublished",
    ("scheduled", None): "article.unpublished",
}


def article_state(article: Article, now: datetime) -> Visibility:
    if article.status not in LIVE or article.published_at is None:
        return None
    return "live" if article.published_at <= now else "scheduled"


def article_data(article: Article, settings: Settings, now: datetime) -> dict[str, Any]:
    """An article as webhooks see it: identity, title, status and address, nothing more."""
    state = article_state(article, now)
    return {
        "id": article.id,
        "number": article.number,
        "slug": article.slug,
        "title": article.title,
        "status": "published" if state == "live" else str(article.status),
        "published_at": webhooks.rfc3339(article.published_at) if article.published_at else None,
        "url": article_url(
            settings, article_id=article.id, slug=article.slug, number=article.number
        ),
    }


async def article_written(
    session: AsyncSession, article: Article, before: Visibility, now: datetime
) -> None:
    """After an article was created (`before` None) or changed (`before` from
    `article_state` ahead of the change)."""
    event = _ARTICLE_EVENTS.get((before, article_state(article, now)))
    if event is not None:
        data = article_data(article, settings_of(session), now)
        await webhooks.enqueue(session, event, data, now=now)


async def article_touched(session: AsyncSession, article: Article) -> None:
    """After a change that cannot move the article in or out of view (a correction)."""
    now = utcnow()
    await article_written(session, article, article_state(article, now), now)


async def article_deleted(session: AsyncSession, article: Article) -> None:
    """Before the row goes: a public or announced article's removal is news."""
    now = utcnow()
    if article_state(article, now) is not None:
        data = article_data(article, settings_of(session), now)
        await webhooks.enqueue(session, "article.deleted", data, now=now)


def comment_posted_writes(comment: Comment, settings: Settings, hooks: webhooks.Hooks) -> bool:
    """Whether `comment_posted` may write anything for this comment, given the active
    webhooks (when it may not, the comment can be stored on its own, in one statement, with
    no transaction around it)."""
    if comment.status == CommentState.approved:
        return any("comment.approved" in wanted for _, wanted in hooks) or (
            settings.smtp_url is not None and comment.parent_id is not None
        )
    return comment.status == CommentState.pending and settings.smtp_url is not None


async def comment_posted(
    session: AsyncSession,
    comment: Comment,
    settings: Settings,
    hooks: webhooks.Hooks | None = None,
) -> None:
    """After a reader's comment was stored (with their notification wish): tell moderators
    of a held comment, or everyone concerned of an approved one (`hooks`: the active
    webhooks, when read already)."""
    if comment.status == CommentState.approved:
        await _approved(session, comment, settings, hooks)
    elif comment.status == CommentState.pending:
        await mail.tell_moderators(session, comment, settings)


async def comment_status_set(
    session: AsyncSession, comment: Comment, hooks: webhooks.Hooks | None = None
) -> None:
    """Right after a moderator set a comment's status (before the flush, while the
    attribute's history still knows the old value; `hooks`: the active webhooks, when read
    already)."""
    changed = inspect(comment).attrs.status.history.has_changes()
    if changed and comment.status == CommentState.approved:
        await _approved(session, comment, settings_of(session), hooks)


async def _approved(
    session: AsyncSession,
    comment: Comment,
    settings: Settings,
    hooks: webhooks.Hooks | None = None,
) -> None:
    # Ids only: never the commenter's email, address or user agent.
    data = {"id": comment.id, "article_id": comment.article_id, "parent_id": comment.parent_id}
    await webhooks.enqueue(session, "comment.approved", data, hooks=hooks)
    await mail.tell_replied_to(session, comment, settings)
