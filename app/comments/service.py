"""The rules for readers' comments: who may post where, moderation and anti-spam, threads,
an exact approved count on the article, and the readers' privacy."""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service as articles
from app.articles.models import Article
from app.comments.models import Comment, CommentState
from app.comments.schemas import CommentCreate
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    TooManyRequests,
)
from app.core.html import count_links, render_comment
from app.core.ratelimit import RateLimiter, Verdict
from app.outbox import events

ANONYMOUS = "Anonymous"


class CommentsClosed(DomainError):
    status = 403
    type = "comments-closed"
    title = "Comments are closed"


class EditWindowClosed(DomainError):
    status = 403
    type = "edit-window-closed"
    title = "The edit window has closed"


# --- counting ----------------------------------------------------------------------------


async def lock_articles(session: AsyncSession, article_ids: Iterable[int]) -> None:
    """Take the articles' row locks first, always in id order: concurrent posts and
    moderation on one article then recount one after another (no lost update, no
    deadlock). SQLite serialises writers anyway and ignores FOR UPDATE."""
    ids = sorted(set(article_ids))
    if ids:
        await session.execute(
            select(Article.id).where(Article.id.in_(ids)).order_by(Article.id).with_for_update()
        )


async def recount(session: AsyncSession, article_ids: Iterable[int]) -> None:
    """Set each article's comment_count to its approved comments. A core UPDATE: the
    article's version (its editors' ETag) must not move because a reader commented."""
    for article_id in sorted(set(article_ids)):
        approved = (
            select(func.count())
            .select_from(Comment)
            .where(Comment.article_id == article_id, Comment.status == CommentState.approved)
            .scalar_subquery()
        )
        await session.execute(
            update(Article)
            .where(Article.id == article_id)
            .values(comment_count=approved)
            .execution_options(synchronize_session=False)
        )


# --- posting -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Where the client stands against the hourly limit (for RateLimit-* headers)."""

    hourly: Verdict | None


async def check_limits(limiter: RateLimiter, settings: Settings, *, ip: str, email: str) -> Limits:
    """Flood control (one post per IP and per email every N seconds) and the hourly
    per-IP limit. Raises TooManyRequests; counts the attempt when it passes."""
    if settings.comment_flood_seconds:
        rule = f"1/{settings.comment_flood_seconds} seconds"
        for key in (("flood-ip", ip), ("flood-email", email)):
            verdict = await limiter.check(rule, *key)
            if not verdict.allowed:
                raise TooManyRequests(
                    f"Wait {settings.comment_flood_seconds} seconds between comments.",
                    retry_after=verdict.reset_after,
                )
    hourly = None
    if settings.comment_rate_limit:
        hourly = await limiter.check(settings.comment_rate_limit, "comments-ip", ip)
        if not hourly.allowed:
            raise TooManyRequests(
                "Too many comments from your address; try again later.",
                retry_after=hourly.reset_after,
            )
    if settings.comment_flood_seconds:
        rule = f"1/{settings.comment_flood_seconds} seconds"
        await limiter.hit(rule, "flood-ip", ip)
        await limiter.hit(rule, "flood-email", email)
    if settings.comment_rate_limit:
        hourly = await limiter.hit(settings.comment_rate_limit, "comments-ip", ip)
    return Limits(hourly=hourly)


def _blocked(data: CommentCreate, ip: str, settings: Settings) -> bool:
    text = f"{data.author_name}\n{data.author_url or ''}\n{data.content}".casefold()
    if any(word.casefold() in text for word in settings.comment_blocklist_words if word):
        return True
    email = data.author_email
    for entry in settings.comment_blocklist_emails:
        entry = entry.lower()
        if email == entry or (entry.startswith("@") and email.endswith(entry)):
            return True
    try:
        address = ip_address(ip)
    except ValueError:
        return False
    for entry in settings.comment_blocklist_ips:
        try:
            if address in ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


async def _initial_status(
    session: AsyncSession, data: CommentCreate, html: str, ip: str, settings: Settings
) -> CommentState:
    if data.website or _blocked(data, ip, settings):
        return CommentState.spam
    if count_links(html) > settings.comment_max_links:
        return CommentState.pending
    match settings.comment_moderation:
        case "none":
            return CommentState.approved
        case "all":
            return CommentState.pending
    known = await session.scalar(
        select(Comment.id)
        .where(Comment.author_email == data.author_email, Comment.status == CommentState.approved)
        .limit(1)
    )
    return CommentState.approved if known is not None else CommentState.pending


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Placement:
    article_id: int
    parent_id: int | None
    root_id: int | None
    depth: int


async def prepare(
    session: AsyncSession, article_id: int, data: CommentCreate, settings: Settings
) -> Placement:
    """Every check that does not depend on the client's rate: where the comment goes, and
    whether it may go there at all."""
    now = utcnow()
    article = await session.get(Article, article_id)
    if article is None or not articles.is_live(article, now):
        raise NotFound(f"No article {article_id}.")
    if not articles.comments_open(article, settings, now):
        raise CommentsClosed("Comments on this article are closed.")
    depth, root_id = 0, None
    if data.parent_id is not None:
        parent = await session.get(Comment, data.parent_id)
        if (
            parent is None
            or parent.article_id != article_id
            or parent.status != CommentState.approved
        ):
            raise InvalidInput("Reply to a visible comment on the same article.", field="parent_id")
        depth, root_id = parent.depth + 1, parent.root_id
        if depth >= settings.comment_max_depth:
            raise InvalidInput(
                f"Replies nest at most {settings.comment_max_depth} levels.", field="parent_id"
            )
    duplicate = await session.scalar(
        select(Comment.id).where(
            Comment.article_id == article_id,
            Comment.author_email == data.author_email,
            Comment.content_source == data.content,
        )
    )
    if duplicate is not None:
        raise Conflict("You already said that.", field="content")
    return Placement(article_id, data.parent_id, root_id, depth)


async def store(
    session: AsyncSession,
    place: Placement,
    data: CommentCreate,
    *,
    ip: str,
    user_agent: str | None,
    settings: Settings,
) -> tuple[Comment, str]:
    """Store a prepared comment; returns it with its one-time edit token."""
    now = utcnow()
    html = render_comment(data.content)
    status = await _initial_status(session, data, html, ip, settings)
    token = secrets.token_urlsafe(24)
    await lock_articles(session, [place.article_id])
    comment = Comment(
        article_id=place.article_id,
        parent_id=place.parent_id,
        root_id=place.root_id,
        depth=place.depth,
        status=status,
        author_name=data.author_name,
        author_email=data.author_email,
        author_url=data.author_url,
        content_source=data.content,
        content_html=html,
        ip_address=ip,
        user_agent=user_agent,
        created_at=now,
        updated_at=now,
        edit_token_hash=_hash(token),
        edit_expires_at=now + timedelta(minutes=settings.comment_edit_minutes),
    )
    session.add(comment)
    await session.flush()
    if comment.root_id is None:
        comment.root_id = comment.id
    if status == CommentState.approved:
        await recount(session, [place.article_id])
    await events.comment_posted(session, comment, data, settings)
    await session.flush()
    return comment, token


# --- the commenter's own comment ---------------------------------------------------------


async def get(session: AsyncSession, comment_id: int) -> Comment:
    comment = await session.get(Comment, comment_id)
    if comment is None:
        raise NotFound(f"No comment {comment_id}.")
    return comment


def owns(comment: Comment, token: str | None) -> bool:
    return (
        token is not None
        and comment.edit_token_hash is not None
        and secrets.compare_digest(comment.edit_token_hash, _hash(token))
    )


def ensure_editable(comment: Comment) -> None:
    if comment.edit_expires_at is None or comment.edit_expires_at <= utcnow():
        raise EditWindowClosed("Comments can be changed only for a few minutes after posting.")
    if comment.status in (CommentState.trash, CommentState.deleted, CommentState.spam):
        raise NotFound(f"No comment {comment.id}.")


async def edit_own(
    session: AsyncSession, comment: Comment, content: str, settings: Settings
) -> Comment:
    ensure_editable(comment)
    await lock_articles(session, [comment.article_id])
    html = render_comment(content)
    comment.content_source = content
    comment.content_html = html
    comment.updated_at = utcnow()
    if comment.status == CommentState.approved and count_links(html) > settings.comment_max_links:
        comment.status = CommentState.pending
    await recount(session, [comment.article_id])
    await session.flush()
    return comment


# --- moderation --------------------------------------------------------------------------


async def _has_children(session: AsyncSession, comment_id: int) -> bool:
    child = await session.scalar(select(Comment.id).where(Comment.parent_id == comment_id).limit(1))
    return child is not None


async def _purge(session: AsyncSession, comment: Comment) -> None:
    """Remove for good. A comment with replies stays as an empty tombstone, so the replies
    keep their place in the thread."""
    if await _has_children(session, comment.id):
        _scrub(comment, delete_content=True)
        comment.status = CommentState.deleted
    else:
        await session.delete(comment)


def _scrub(comment: Comment, *, delete_content: bool) -> None:
    comment.author_name = ANONYMOUS
    comment.author_email = None
    comment.author_url = None
    comment.ip_address = None
    comment.user_agent = None
    comment.edit_token_hash = None
    comment.anonymised_at = utcnow()
    if delete_content:
        comment.content_source = ""
        comment.content_html = ""


ACTIONS: dict[str, CommentState] = {
    "approve": CommentState.approved,
    "hold": CommentState.pending,
    "spam": CommentState.spam,
    "trash": CommentState.trash,
}


async def moderate(
    session: AsyncSession,
    comment: Comment,
    *,
    status: str | None = None,
    content: str | None = None,
) -> Comment:
    """Change one comment only: approving a reply never approves its parent silently."""
    await lock_articles(session, [comment.article_id])
    await session.refresh(comment, with_for_update=True)
    if comment.status == CommentState.deleted:
        raise NotFound(f"No comment {comment.id}.")
    if content is not None:
        comment.content_source = content
        comment.content_html = render_comment(content)
    if status is not None:
        comment.status = CommentState(status)
        await events.comment_status_set(session, comment)
    comment.updated_at = utcnow()
    await session.flush()
    await recount(session, [comment.article_id])
    return comment


async def remove(session: AsyncSession, comment: Comment) -> None:
    """First delete: to the trash. A second: for good."""
    await lock_articles(session, [comment.article_id])
    await session.refresh(comment, with_for_update=True)
    if comment.status in (CommentState.trash, CommentState.deleted):
        await _purge(session, comment)
    else:
        comment.status = CommentState.trash
        comment.updated_at = utcnow()
    await session.flush()
    await recount(session, [comment.article_id])


async def bulk(session: AsyncSession, ids: list[int], action: str) -> tuple[list[int], list[int]]:
    wanted = sorted(set(ids))
    found = list(
        await session.scalars(select(Comment).where(Comment.id.in_(wanted)).order_by(Comment.id))
    )
    article_ids = {c.article_id for c in found}
    await lock_articles(session, article_ids)
    changed = []
    for comment in found:
        await session.refresh(comment, with_for_update=True)
        if comment.status == CommentState.deleted:
            continue
        if action == "delete":
            await _purge(session, comment)
        else:
            comment.status = ACTIONS[action]
            await events.comment_status_set(session, comment)
            comment.updated_at = utcnow()
        changed.append(comment.id)
    await session.flush()
    await recount(session, article_ids)
    found_ids = {c.id for c in found}
    return changed, [i for i in wanted if i not in found_ids]


async def moderation_queue(
    session: AsyncSession,
    *,
    status: str | None,
    article_id: int | None,
    q: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Comment], int]:
    query = select(Comment).where(Comment.status != CommentState.deleted)
    if status:
        query = query.where(Comment.status == CommentState(status))
    if article_id is not None:
        query = query.where(Comment.article_id == article_id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Comment.content_source.ilike(pattern, escape="\\"),
                Comment.author_name.ilike(pattern, escape="\\"),
                Comment.author_email.ilike(pattern, escape="\\"),
            )
        )
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Comment.created_at.desc(), Comment.id.desc()).offset(offset).limit(limit)
    )
    return list(rows), total


# --- reading threads ---------------------------------------------------------------------


@dataclass
class Node:
    comment: Comment
    visible: bool
    replies: list[Node]

    @property
    def removed(self) -> bool:
        return self.comment.status != CommentState.approved


async def threads(
    session: AsyncSession, article_id: int, *, offset: int, limit: int, newest_first: bool
) -> tuple[list[Node], int]:
    """A page of top-level threads that have something to show, each whole."""
    approved_roots = select(Comment.root_id).where(
        Comment.article_id == article_id, Comment.status == CommentState.approved
    )
    roots = select(Comment.id, Comment.created_at).where(
        Comment.article_id == article_id,
        Comment.parent_id.is_(None),
        Comment.id.in_(approved_roots),
    )
    total = await session.scalar(select(func.count()).select_from(roots.subquery())) or 0
    order = (
        (Comment.created_at.desc(), Comment.id.desc())
        if newest_first
        else (
            Comment.created_at,
            Comment.id,
        )
    )
    page_roots = [
        row[0] for row in await session.execute(roots.order_by(*order).offset(offset).limit(limit))
    ]
    if not page_roots:
        return [], total
    rows = await session.scalars(
        select(Comment)
        .where(Comment.article_id == article_id, Comment.root_id.in_(page_roots))
        .order_by(Comment.created_at, Comment.id)
    )
    children: dict[int | None, list[Comment]] = defaultdict(list)
    for comment in rows:
        children[comment.parent_id].append(comment)

    def build(comment: Comment) -> Node:
        replies = [build(child) for child in children.get(comment.id, [])]
        replies = [r for r in replies if r.visible]
        visible = comment.status == CommentState.approved or bool(replies)
        return Node(comment, visible, replies)

    by_id = {c.id: c for c in children[None]}
    nodes = [build(by_id[root_id]) for root_id in page_roots if root_id in by_id]
    return [n for n in nodes if n.visible], total


# --- privacy -----------------------------------------------------------------------------


async def by_email(session: AsyncSession, email: str) -> list[Comment]:
    rows = await session.scalars(
        select(Comment).where(Comment.author_email == email).order_by(Comment.created_at)
    )
    return list(rows)


async def erase(session: AsyncSession, email: str, *, delete_content: bool) -> int:
    found = await by_email(session, email)
    await lock_articles(session, {c.article_id for c in found})
    for comment in found:
        _scrub(comment, delete_content=delete_content)
        if delete_content:
            comment.status = CommentState.deleted
    await session.flush()
    if delete_content:
        await recount(session, {c.article_id for c in found})
    return len(found)


async def anonymise_old(session: AsyncSession, days: int, now: datetime | None = None) -> int:
    """Erase IP addresses and user agents older than the retention period."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    result = await session.execute(
        update(Comment)
        .where(
            Comment.created_at < cutoff,
            or_(Comment.ip_address.is_not(None), Comment.user_agent.is_not(None)),
        )
        .values(ip_address=None, user_agent=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
