"""The rules for readers' comments: who may post where, moderation and anti-spam, threads,
an exact approved count on the article, and the readers' privacy."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network
from typing import Any, cast

import orjson
from sqlalchemy import (
    Integer,
    Select,
    String,
    Text,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, make_transient_to_detached

from app.articles import service as articles
from app.articles.models import Article, ArticleStatus, CommentStatus
from app.cache import keys
from app.cache.publish import commit_writes, invalidate
from app.comments.models import Comment, CommentState
from app.comments.schemas import CommentCreate
from app.core import driver
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
from app.core.problems import title_of
from app.core.ratelimit import RateLimiter, Verdict
from app.core.text import contains, name_key
from app.outbox import events
from app.users.models import User
from app.webhooks import service as webhooks

ANONYMOUS = "Anonymous"


class CommentsClosed(DomainError):
    status = 403
    type = "comments-closed"
    title = title_of(type, status)


class EditWindowClosed(DomainError):
    status = 403
    type = "edit-window-closed"
    title = title_of(type, status)


# --- counting ----------------------------------------------------------------------------


async def lock_articles(session: AsyncSession, article_ids: Iterable[int]) -> None:
    """Take the articles' row locks first, always in id order: concurrent moderation on one
    article then recounts one after another, and posts (which count +1 under the same lock)
    wait their turn (no lost update, no deadlock). SQLite serialises writers anyway and
    ignores FOR UPDATE."""
    ids = sorted(set(article_ids))
    if ids:
        await session.execute(
            select(Article.id).where(Article.id.in_(ids)).order_by(Article.id).with_for_update()
        )


async def lock_and_reread(session: AsyncSession, comment: Comment) -> None:
    """`lock_articles` for one comment's article, and the comment read again under that
    lock, in one round trip: every round trip while the lock is held is one that every
    other write on the article waits for. The comment's own row is locked by its update,
    after the article's, as everywhere."""
    await session.execute(
        select(Comment)
        .join(Article, Article.id == Comment.article_id)
        .where(Comment.id == comment.id)
        .with_for_update(of=Article)
        .execution_options(populate_existing=True)
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
    """Flood control (one post per email every N seconds) and the hourly per-address limit.
    Raises TooManyRequests; each attempt that passes is counted as it is checked, atomically,
    so parallel posts cannot all slip through one free slot.

    Flood control is per email, not per address: readers behind one carrier NAT or office
    proxy share an address, and one reader's comment must not make the others wait. What
    one address may post in all is the hourly limit's to bound."""
    if settings.comment_flood_seconds:
        rule = f"1/{settings.comment_flood_seconds} seconds"
        verdict = await limiter.hit(rule, "flood-email", email)
        if not verdict.allowed:
            raise _wait(verdict, "between comments from one email address")
    hourly = None
    if settings.comment_rate_limit:
        hourly = await limiter.hit(settings.comment_rate_limit, "comments-ip", ip)
        if not hourly.allowed:
            raise _wait(hourly, "for more comments from your address")
    return Limits(hourly=hourly)


def _wait(verdict: Verdict, reason: str) -> TooManyRequests:
    # The detail and Retry-After tell the same number of seconds.
    seconds = max(1, verdict.reset_after)
    unit = "second" if seconds == 1 else "seconds"
    return TooManyRequests(f"Wait {seconds} {unit} {reason}.", retry_after=seconds)


@dataclass(frozen=True, slots=True)
class Written:
    """What the rules read of a comment, new or edited."""

    name: str
    email: str
    url: str | None
    content: str
    html: str
    ip: str


def _blocked(written: Written, settings: Settings) -> bool:
    if settings.comment_blocklist_words:
        text = f"{written.name}\n{written.url or ''}\n{written.content}".casefold()
        if any(word.casefold() in text for word in settings.comment_blocklist_words if word):
            return True
    email = written.email
    for entry in settings.comment_blocklist_emails:
        entry = entry.lower()
        if email == entry or (entry.startswith("@") and email.endswith(entry)):
            return True
    if not settings.comment_blocklist_ips:
        return False
    try:
        address = ip_address(written.ip)
    except ValueError:
        return False
    for entry in settings.comment_blocklist_ips:
        try:
            if address in ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _status(
    written: Written, settings: Settings, *, known: bool, imitates_staff: bool
) -> CommentState:
    """The rules a comment meets when it is posted, and again when an approved one is
    edited. `known`: the author already has an approved comment under the same email and
    name (asked only when moderation is "known"). A name that imitates staff waits for a
    moderator whatever the moderation setting, as too many links do."""
    if _blocked(written, settings):
        return CommentState.spam
    if count_links(written.html) > settings.comment_max_links or imitates_staff:
        return CommentState.pending
    match settings.comment_moderation:
        case "none":
            return CommentState.approved
        case "all":
            return CommentState.pending
    return CommentState.approved if known else CommentState.pending


def imitates(name: str, staff_names: Iterable[str]) -> bool:
    """Whether a commenter's name reads as a staff member's display name or login."""
    key = name_key(name)
    return any(key == name_key(staff) for staff in staff_names)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Placement:
    article_id: int
    parent_id: int | None
    root_id: int | None
    depth: int
    # The author already has an approved comment under the same email and name (only asked
    # when moderation is "known").
    known: bool = False
    # The author's name reads as an active staff member's.
    imitates_staff: bool = False


def _placement_query(ask_known: bool) -> Select[*tuple[Any, ...]]:
    """Every check after the rate limits in one round trip: the article (is it public, are
    comments open), the parent, an exact duplicate from the same client, for "known"
    moderation whether the author already has an approved comment under this email and
    name, and the names of active staff. Core, not ORM: this runs on every post."""
    parent = aliased(Comment, name="parent")
    article_id = bindparam("article_id", type_=Integer)
    email = bindparam("email", type_=String)
    duplicate = (
        select(Comment.id)
        .where(
            Comment.article_id == article_id,
            Comment.author_email == email,
            Comment.content_source == bindparam("content", type_=Text),
            Comment.ip_address == bindparam("ip", type_=String),
        )
        .exists()
    )
    known = (
        select(Comment.id)
        .where(
            Comment.author_email == email,
            Comment.author_name == bindparam("name", type_=String),
            Comment.status == CommentState.approved,
        )
        .exists()
        if ask_known
        else false()
    )
    active = select(User.display_name.label("n")).where(User.is_active.is_(True))
    names = active.union_all(select(User.username).where(User.is_active.is_(True))).subquery()
    staff = select(func.json_group_array(names.c.n)).scalar_subquery()
    return (
        select(
            Article.status,
            Article.published_at,
            Article.comment_status,
            Article.comments_close_at,
            parent.article_id,
            parent.status,
            parent.depth,
            parent.root_id,
            duplicate,
            known,
            staff,
        )
        .outerjoin(parent, parent.id == bindparam("parent_id", type_=Integer))
        .where(Article.id == article_id)
    )


# SQLite's; PostgreSQL reads the same through the driver (below).
_PLACEMENT = {ask: _placement_query(ask) for ask in (False, True)}
# The same on PostgreSQL: $1 article, $2 email, $3 content, $4 parent, $5 client address,
# and for "known" moderation $6 the author's name.
_PG_PLACEMENT_SQL = """SELECT a.status, a.published_at, a.comment_status, a.comments_close_at,
    p.article_id, p.status, p.depth, p.root_id,
    EXISTS (
        SELECT FROM comments AS d
        WHERE d.article_id = $1 AND d.author_email = $2 AND d.content_source = $3
            AND d.ip_address = $5
    ),
    {known},
    (
        SELECT coalesce(json_agg(v.n), '[]')::text
        FROM users AS u, LATERAL (VALUES (u.display_name), (u.username)) AS v(n)
        WHERE u.is_active
    )
FROM articles AS a LEFT JOIN comments AS p ON p.id = $4
WHERE a.id = $1"""
_PG_KNOWN = """EXISTS (
        SELECT FROM comments AS k
        WHERE k.author_email = $2 AND k.author_name = $6 AND k.status = 'approved'
    )"""
_PG_PLACEMENT = {
    ask: _PG_PLACEMENT_SQL.format(known=_PG_KNOWN if ask else "false") for ask in (False, True)
}


@dataclass(frozen=True, slots=True)
class _ArticleState:
    """What `articles.is_live` and `articles.comments_open` read of an article."""

    status: ArticleStatus
    published_at: datetime | None
    comment_status: CommentStatus
    comments_close_at: datetime | None


async def prepare(
    session: AsyncSession, article_id: int, data: CommentCreate, settings: Settings, *, ip: str
) -> Placement:
    """Every check that reads stored comments and articles: where the comment goes, and
    whether it may go there at all. One read, in or out of a transaction. Called only once
    the client's rate is counted (`check_limits`), so its answers cost every guess a post.

    A duplicate (same article, email and text) is refused only when it comes from the
    client address the first copy came from: anyone else gets the answer any new comment
    gets, so the answer never tells which email wrote a text."""
    now = utcnow()
    connection = await session.connection()
    ask_known = settings.comment_moderation == "known"
    row: Any
    if connection.dialect.name == "postgresql":
        args: list[Any] = [article_id, data.author_email, data.content, data.parent_id, ip]
        if ask_known:
            args.append(data.author_name)
        row = await driver.fetchrow(connection, _PG_PLACEMENT[ask_known], *args)
    else:
        params = {
            "article_id": article_id,
            "parent_id": data.parent_id,
            "email": data.author_email,
            "content": data.content,
            "ip": ip,
            "name": data.author_name,
        }
        row = (await connection.execute(_PLACEMENT[ask_known], params)).first()
    if row is None:
        raise NotFound(f"No article {article_id}.")
    status, published_at, comment_status, closes_at, *parent, duplicate, known, staff = row
    # The articles service decides visibility from these four columns (no ORM object).
    article = _ArticleState(
        ArticleStatus(status), published_at, CommentStatus(comment_status), closes_at
    )
    if not articles.is_live(article, now):
        raise NotFound(f"No article {article_id}.")
    if not articles.comments_open(article, settings, now):
        raise CommentsClosed("Comments on this article are closed.")
    depth, root_id = 0, None
    if data.parent_id is not None:
        parent_article, parent_status, parent_depth, parent_root = parent
        if parent_article != article_id or parent_status != CommentState.approved:
            raise InvalidInput("Reply to a visible comment on the same article.", field="parent_id")
        depth, root_id = parent_depth + 1, parent_root
        if depth >= settings.comment_max_depth:
            raise InvalidInput(
                f"Replies nest at most {settings.comment_max_depth} levels.", field="parent_id"
            )
    if duplicate:
        raise Conflict("You already said that.", field="content")
    return Placement(
        article_id,
        data.parent_id,
        root_id,
        depth,
        known=bool(known),
        imitates_staff=imitates(data.author_name, orjson.loads(staff)),
    )


# PostgreSQL: lock the article row (as `lock_articles` does; when the comment is approved,
# by the UPDATE that counts it, exact under the lock), take the new id and insert the
# comment, its root_id its own id when it starts a thread: one statement, one round trip.
# An article deleted since `prepare` inserts nothing.
_PG_LOCK = "SELECT id FROM articles WHERE id = $1 FOR UPDATE"
_PG_COUNT = "UPDATE articles SET comment_count = comment_count + 1 WHERE id = $1 RETURNING id"
_PG_INSERT = """WITH article AS ({article})
INSERT INTO comments (
    id, article_id, parent_id, root_id, depth, status, author_name, author_email,
    author_url, content_source, content_html, ip_address, user_agent, created_at,
    updated_at, edit_token_hash, edit_expires_at, notify_replies, by_staff
)
SELECT new.id, article.id, $2::integer, coalesce($3::integer, new.id), $4::integer,
    $5::text, $6::text, $7::text, $8::text, $9::text, $10::text, $11::text, $12::text,
    $13::timestamptz, $13::timestamptz, $14::text, $15::timestamptz, $16::boolean,
    $17::boolean
FROM article, (SELECT nextval(pg_get_serial_sequence('comments', 'id'))::integer AS id) AS new
RETURNING id"""
_PG_INSERT_PENDING = _PG_INSERT.format(article=_PG_LOCK)
_PG_INSERT_COUNTED = _PG_INSERT.format(article=_PG_COUNT)


async def _insert(session: AsyncSession, comment: Comment) -> int | None:
    """Store the new comment and, when approved, count it on its article; returns its id
    (None when the article has gone)."""
    connection = await session.connection()
    counted = comment.status == CommentState.approved
    if connection.dialect.name == "postgresql":
        sql = _PG_INSERT_COUNTED if counted else _PG_INSERT_PENDING
        args = (
            comment.article_id,
            comment.parent_id,
            comment.root_id,
            comment.depth,
            comment.status.value,
            comment.author_name,
            comment.author_email,
            comment.author_url,
            comment.content_source,
            comment.content_html,
            comment.ip_address,
            comment.user_agent,
            comment.created_at,
            comment.edit_token_hash,
            comment.edit_expires_at,
            comment.notify_replies,
            comment.by_staff,
        )
        if driver.autocommit(connection):
            # Nothing else to write with it: one statement, atomic on its own.
            return cast(int | None, await driver.fetchval(connection, sql, *args))
        # In the caller's transaction, which SQLAlchemy may not have begun yet.
        return (await connection.exec_driver_sql(sql, args)).scalar()
    # Elsewhere (SQLite): the same steps, statement by statement.
    await lock_articles(session, [comment.article_id])
    result = await connection.execute(
        insert(Comment).values({column: getattr(comment, column) for column in _STORED})
    )
    (comment_id,) = result.inserted_primary_key or (None,)
    if comment_id is None:
        return None
    if comment.root_id is None:
        await connection.execute(
            update(Comment).where(Comment.id == comment_id).values(root_id=comment_id)
        )
    if counted:
        await connection.execute(
            update(Article)
            .where(Article.id == comment.article_id)
            .values(comment_count=Article.comment_count + 1)
        )
    return int(comment_id)


_STORED = (
    "article_id", "parent_id", "root_id", "depth", "status", "author_name", "author_email",
    "author_url", "content_source", "content_html", "ip_address", "user_agent", "created_at",
    "updated_at", "edit_token_hash", "edit_expires_at", "notify_replies", "by_staff",
)  # fmt: skip


def _initial_status(
    data: CommentCreate, html: str, ip: str, settings: Settings, place: Placement
) -> CommentState:
    if data.website:  # the honeypot: only bots fill it in
        return CommentState.spam
    written = Written(data.author_name, data.author_email, data.author_url, data.content, html, ip)
    return _status(written, settings, known=place.known, imitates_staff=place.imitates_staff)


def compose(
    place: Placement,
    data: CommentCreate,
    *,
    ip: str,
    user_agent: str | None,
    settings: Settings,
    staff: bool = False,
) -> tuple[Comment, str]:
    """The comment to store (its moderation status decided), with its one-time edit token.
    `staff`: posted with a newsroom member's token, so its name is theirs to use and it is
    marked as staff's."""
    if staff:
        place = replace(place, imitates_staff=False)
    now = utcnow()
    html = render_comment(data.content)
    token = secrets.token_urlsafe(24)
    comment = Comment(
        article_id=place.article_id,
        parent_id=place.parent_id,
        root_id=place.root_id,
        depth=place.depth,
        status=_initial_status(data, html, ip, settings, place),
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
        notify_replies=data.notify_replies,
        by_staff=staff,
        unsubscribe_token_hash=None,
        anonymised_at=None,
    )
    return comment, token


async def hooks_for(session: AsyncSession, comment: Comment) -> webhooks.Hooks:
    """The active webhooks, when `comment` is approved (nothing is told of others). Read
    before the insert: it takes the article's row lock, held until the commit, which other
    posts on the article wait for."""
    if comment.status != CommentState.approved:
        return []
    return await webhooks.active_hooks(session)


def writes_with(
    session: AsyncSession, comment: Comment, settings: Settings, hooks: webhooks.Hooks
) -> bool:
    """Whether storing `comment` writes more than its own statement (events, or what the
    commit itself queues), so that it needs a transaction."""
    return events.comment_posted_writes(comment, settings, hooks) or (
        comment.status == CommentState.approved and commit_writes(session)
    )


async def save(
    session: AsyncSession,
    comment: Comment,
    settings: Settings,
    hooks: webhooks.Hooks | None = None,
) -> Comment:
    """Store a composed comment (counted on its article when approved) and queue what its
    posting means to others (`events.comment_posted`; `hooks` from `hooks_for`)."""
    if hooks is None:
        hooks = await hooks_for(session, comment)
    if comment.status == CommentState.approved:
        invalidate(session, keys.comments(comment.article_id))
    comment_id = await _insert(session, comment)
    if comment_id is None:
        raise NotFound(f"No article {comment.article_id}.")
    comment.id = comment_id
    if comment.root_id is None:
        comment.root_id = comment_id
    if events.comment_posted_writes(comment, settings, hooks):
        # Stored by a Core statement: the session takes it as loaded, so what the events
        # change on it is written by the next flush.
        make_transient_to_detached(comment)
        session.add(comment)
        await events.comment_posted(session, comment, settings, hooks)
        await session.flush()
    return comment


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
    comment, token = compose(place, data, ip=ip, user_agent=user_agent, settings=settings)
    return await save(session, comment, settings), token


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
    """The commenter's edit. An approved comment goes through the rules a new comment
    meets, so an edit can send it back to moderation; a held one stays held."""
    ensure_editable(comment)
    await lock_articles(session, [comment.article_id])
    if comment.status == CommentState.approved:
        invalidate(session, keys.comments(comment.article_id))
    html = render_comment(content)
    comment.content_source = content
    comment.content_html = html
    comment.updated_at = utcnow()
    if comment.status == CommentState.approved:
        comment.status = await _status_after_edit(session, comment, settings)
    # Flushed first: the recount reads the stored status.
    await session.flush()
    await recount(session, [comment.article_id])
    return comment


async def _status_after_edit(
    session: AsyncSession, comment: Comment, settings: Settings
) -> CommentState:
    known = False
    if settings.comment_moderation == "known":
        # Known from another approved comment: this one's approval says nothing new.
        other = await session.scalar(
            select(Comment.id)
            .where(
                Comment.author_email == comment.author_email,
                Comment.author_name == comment.author_name,
                Comment.status == CommentState.approved,
                Comment.id != comment.id,
            )
            .limit(1)
        )
        known = other is not None
    staff = await session.execute(
        select(User.display_name, User.username).where(User.is_active.is_(True))
    )
    written = Written(
        comment.author_name,
        comment.author_email or "",
        comment.author_url,
        comment.content_source,
        comment.content_html,
        comment.ip_address or "",
    )
    imitating = imitates(comment.author_name, (name for row in staff for name in row))
    return _status(written, settings, known=known, imitates_staff=imitating)


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
    # Read before the article's row lock, which every other write on the article awaits.
    hooks = await webhooks.active_hooks(session) if status is not None else None
    await lock_and_reread(session, comment)
    if comment.status == CommentState.deleted:
        raise NotFound(f"No comment {comment.id}.")
    # Moderation can show or hide a comment, or the placeholder kept for its replies.
    invalidate(session, keys.comments(comment.article_id))
    if content is not None:
        comment.content_source = content
        comment.content_html = render_comment(content)
    if status is not None:
        comment.status = CommentState(status)
        await events.comment_status_set(session, comment, hooks)
    comment.updated_at = utcnow()
    await session.flush()
    await recount(session, [comment.article_id])
    return comment


async def remove(session: AsyncSession, comment: Comment) -> None:
    """First delete: to the trash. A second: for good."""
    await lock_and_reread(session, comment)
    invalidate(session, keys.comments(comment.article_id))
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
    hooks = await webhooks.active_hooks(session) if action != "delete" else None
    await lock_articles(session, article_ids)
    invalidate(session, *(keys.comments(i) for i in article_ids))
    changed = []
    for comment in found:
        await session.refresh(comment, with_for_update=True)
        if comment.status == CommentState.deleted:
            continue
        if action == "delete":
            await _purge(session, comment)
        else:
            comment.status = ACTIONS[action]
            await events.comment_status_set(session, comment, hooks)
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
        pattern = contains(q)
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


# --- privacy -----------------------------------------------------------------------------


async def by_email(session: AsyncSession, email: str) -> list[Comment]:
    rows = await session.scalars(
        select(Comment).where(Comment.author_email == email).order_by(Comment.created_at)
    )
    return list(rows)


async def erase(session: AsyncSession, email: str, *, delete_content: bool) -> int:
    found = await by_email(session, email)
    await lock_articles(session, {c.article_id for c in found})
    invalidate(session, *(keys.comments(c.article_id) for c in found))
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
