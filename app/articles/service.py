"""The newsroom's rules for articles: who may see and change what, slugs, numbers,
revisions, scheduled visibility, and the public listing."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.sql.elements import ColumnElement

from app.articles import invalidation, reads, search
from app.articles.memo import ListingMemo, ListingState
from app.articles.models import (
    Article,
    ArticleSlug,
    ArticleStatus,
    CommentStatus,
    Correction,
    Revision,
    article_categories,
    article_tags,
)
from app.articles.queries import LIVE, is_public
from app.articles.reads import ArticleRow
from app.articles.schemas import TITLE_MAX, ArticleCreate, ArticleUpdate, CorrectionCreate
from app.cache import keys as cache_keys
from app.cache.publish import invalidate
from app.categories import service as categories
from app.categories.models import Category
from app.core.config import Settings
from app.core.dates import in_utc
from app.core.db import UTCDateTime, dialect_of, utcnow
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from app.core.html import (
    EMBED_PROVIDERS,
    excerpt_of,
    media_ids,
    plain_text,
    sanitize_article_html,
    word_count,
)
from app.core.schemas import MAX_ID
from app.core.security import Principal
from app.core.text import slugify, unique_slug
from app.media.models import Media, article_media
from app.outbox import events
from app.tags import service as tags
from app.tags.models import Tag
from app.users.models import User

MAX_SLUG = 200
# An article as shown: an ORM object, or a row from the read path.
Shown = Article | ArticleRow


class Visibility(Protocol):
    """What decides whether an article is public and open to comments."""

    @property
    def status(self) -> ArticleStatus: ...
    @property
    def published_at(self) -> datetime | None: ...
    @property
    def comment_status(self) -> CommentStatus: ...
    @property
    def comments_close_at(self) -> datetime | None: ...


# Offsets from which a page is found by a remembered keyset position instead of OFFSET.
DEEP_OFFSET = 1000
# Relevance ranks the newest matches (a news search's reader wants this year's story, and
# ranking every match reads every match's text); older matches follow, newest first.
RELEVANCE_WINDOW = 200
# Orders whose keys only change with the listing generation (updated_at moves without it).
STABLE_ORDERS = ("-published_at", "published_at", "title")
REVISED_FIELDS = ("title", "kicker", "excerpt", "body")
# Changes that can move an article among its category's neighbours.
PLACE_FIELDS = frozenset({"status", "published_at", "category_id"})
# The editing view's loads (readers' pages go through `reads`): to-one relations join in
# the same query; collections load in one more query each.
DETAIL_OPTIONS = (
    joinedload(Article.author),
    joinedload(Article.category),
    joinedload(Article.featured_media),
    selectinload(Article.body_media),
    selectinload(Article.tags),
    selectinload(Article.categories),
    selectinload(Article.corrections),
)


# --- visibility and permissions --------------------------------------------------------


def is_live(article: Visibility, now: datetime) -> bool:
    return (
        article.status in LIVE and article.published_at is not None and article.published_at <= now
    )


def public_status(article: Shown, now: datetime) -> ArticleStatus:
    """What readers are told: a scheduled article whose time has come is published."""
    if article.status == ArticleStatus.scheduled and is_live(article, now):
        return ArticleStatus.published
    return article.status


def _reads_unpublished(principal: Principal | None, article: Article) -> bool:
    return (
        principal is not None
        and principal.can("articles:read")
        and (principal.sees_all_articles or article.author_id == principal.user.id)
    )


def hidden(article_id: int | str) -> NotFound:
    return NotFound(f"No article {article_id}.")


def ensure_readable(article: Article, principal: Principal | None, now: datetime) -> None:
    if not (is_live(article, now) or _reads_unpublished(principal, article)):
        raise hidden(article.id)


def ensure_writable(article: Article, principal: Principal, now: datetime) -> None:
    """Authors change only their own articles; editors and admins change all. Someone
    else's unpublished article is not even acknowledged to exist."""
    if principal.sees_all_articles or article.author_id == principal.user.id:
        return
    if is_live(article, now):
        raise Forbidden("Authors may change only their own articles.")
    raise hidden(article.id)


# --- reading one -----------------------------------------------------------------------


async def load(session: AsyncSession, article_id: int) -> Article:
    article = await session.scalar(
        select(Article)
        .where(Article.id == article_id)
        .options(*DETAIL_OPTIONS)
        .execution_options(populate_existing=True)
    )
    if article is None:
        raise hidden(article_id)
    return article


async def id_by_slug(session: AsyncSession, slug: str) -> tuple[int, str | None]:
    """(article id, the current slug if `slug` is a retired one)."""
    found = await session.scalar(select(Article.id).where(Article.slug == slug))
    if found is not None:
        return found, None
    row = (
        await session.execute(
            select(Article.id, Article.slug)
            .join(ArticleSlug, ArticleSlug.article_id == Article.id)
            .where(ArticleSlug.slug == slug)
        )
    ).first()
    if row is None:
        raise hidden(slug)
    return row[0], row[1]


async def id_by_number(session: AsyncSession, number: int) -> int:
    found = await session.scalar(select(Article.id).where(Article.number == number))
    if found is None:
        raise hidden(f"number {number}")
    return found


# --- writing ---------------------------------------------------------------------------


async def _slug_taken(session: AsyncSession, slug: str, article_id: int | None) -> bool:
    current = select(Article.id).where(Article.slug == slug)
    retired = select(ArticleSlug.article_id).where(ArticleSlug.slug == slug)
    if article_id is not None:
        current = current.where(Article.id != article_id)
        retired = retired.where(ArticleSlug.article_id != article_id)
    return (await session.scalar(current.union_all(retired).limit(1))) is not None


async def _set_slug(session: AsyncSession, article: Article, wanted: str | None) -> None:
    own_id = article.id if article.id is not None else None
    if wanted is None:
        if article.slug:
            return

        async def taken(candidate: str) -> bool:
            return await _slug_taken(session, candidate, own_id)

        article.slug = await unique_slug(slugify(article.title, MAX_SLUG), taken, MAX_SLUG)
        return
    if wanted == article.slug:
        return
    if await _slug_taken(session, wanted, own_id):
        raise Conflict(f"The slug {wanted!r} is already used.", field="slug")
    if article.slug and own_id is not None:
        # The old address keeps working: it redirects to the new one.
        session.add(ArticleSlug(slug=article.slug, article_id=own_id))
        await session.execute(
            delete(ArticleSlug).where(ArticleSlug.slug == wanted, ArticleSlug.article_id == own_id)
        )
    article.slug = wanted


async def _set_number(session: AsyncSession, article: Article, wanted: int | None) -> None:
    if wanted is None:
        if not article.number:
            if dialect_of(session) == "postgresql":
                # Serialise number assignment so two concurrent posts never pick the same one.
                await session.execute(text("SELECT pg_advisory_xact_lock(5186)"))
            highest = await session.scalar(select(func.max(Article.number)))
            article.number = (highest or 0) + 1
        return
    if wanted == article.number:
        return
    clash = select(Article.id).where(Article.number == wanted)
    if article.id is not None:
        clash = clash.where(Article.id != article.id)
    if await session.scalar(clash) is not None:
        raise Conflict(f"Article number {wanted} is already used.", field="number")
    article.number = wanted


async def _set_categories(
    session: AsyncSession, article: Article, primary: int | None, extra: list[int]
) -> None:
    category: Category | None = None
    if primary is not None:
        category = await session.get(Category, primary)
        if category is None:
            raise InvalidInput(f"No category with id {primary}.", field="category_id")
    wanted = list(dict.fromkeys(([primary] if primary is not None else []) + extra))
    article.category_id = primary
    article.category = category
    article.categories = await categories.get_many(session, wanted) if wanted else []


def _normalise_schedule(article: Article, now: datetime, asked: bool) -> None:
    """`asked`: the request set the status or the time itself."""
    if article.status == ArticleStatus.published:
        if article.published_at is None:
            article.published_at = now
        elif article.published_at > now:
            article.status = ArticleStatus.scheduled
    elif article.status == ArticleStatus.scheduled:
        if article.published_at is None:
            raise InvalidInput(
                "A scheduled article needs published_at, with a zone.", field="published_at"
            )
        if article.published_at <= now:
            if asked:
                # Publishing back-dated by mistake (a wrong day or zone) must not go unseen.
                raise InvalidInput(
                    "A scheduled time must be in the future; to publish with a past date, "
                    "send status published.",
                    field="published_at",
                )
            article.status = ArticleStatus.published  # its time came while it waited


async def _resolve_author(
    session: AsyncSession, principal: Principal, author_id: int | None
) -> int | None:
    if author_id is None or author_id == principal.user.id:
        return author_id
    if not principal.sees_all_articles:
        raise Forbidden("Only editors and admins may file an article under another author.")
    author = await session.get(User, author_id)
    if author is None or not author.is_active:
        raise InvalidInput(f"No active user with id {author_id}.", field="author_id")
    return author_id


_PLAIN_FIELDS = (
    "featured_media_id",
    "kicker",
    "status",
    "published_at",
    "byline",
    "source_name",
    "source_url",
    "featured_image_url",
    "featured_image_caption",
    "comment_status",
    "comments_close_at",
)


async def _apply(
    session: AsyncSession,
    article: Article,
    changes: dict[str, Any],
    principal: Principal,
    now: datetime,
    embeds: Collection[str],
) -> None:
    """Apply validated `changes` (only the keys present) and derive what follows."""
    if article.id is not None and any(
        k in changes and changes[k] != getattr(article, k) for k in REVISED_FIELDS
    ):
        session.add(
            Revision(
                article_id=article.id,
                title=article.title,
                kicker=article.kicker,
                excerpt=article.excerpt,
                body=article.body,
                created_at=now,
                changed_by_id=principal.user.id,
            )
        )
    if "author_id" in changes:
        author_id = await _resolve_author(session, principal, changes["author_id"])
        if author_id is not None:
            article.author_id = author_id
    if "title" in changes:
        article.title = changes["title"]
    for key in _PLAIN_FIELDS:
        if key in changes:
            setattr(article, key, changes[key])
    if "body" in changes:
        article.body = sanitize_article_html(changes["body"] or "", embeds)
    text_ = plain_text(article.body)
    article.word_count = word_count(text_)
    if "excerpt" in changes:
        given = changes["excerpt"]
        article.excerpt_given = given is not None
        if given is not None:
            article.excerpt = plain_text(given)
    if not article.excerpt_given:
        article.excerpt = excerpt_of(text_)
    _normalise_schedule(article, now, asked="status" in changes or "published_at" in changes)
    await _set_slug(session, article, changes.get("slug"))
    await _set_number(session, article, changes.get("number"))
    if "category_id" in changes or "category_ids" in changes:
        primary = changes.get("category_id", article.category_id)
        extra = changes.get("category_ids")
        if extra is None:
            extra = [c.id for c in article.categories if c.id != article.category_id]
        await _set_categories(session, article, primary, extra)
    if "tags" in changes and changes["tags"] is not None:
        article.tags = await tags.resolve(session, changes["tags"])
    article.updated_at = now


async def _check_media(session: AsyncSession, article: Article, now: datetime) -> None:
    """The media an article shows exist, and have alt text once the article is public or
    announced (a published page must not show an image without one)."""
    body_ids = media_ids(article.body)
    wanted = set(body_ids) | ({article.featured_media_id} if article.featured_media_id else set())
    if not wanted:
        return
    rows = await session.execute(select(Media.id, Media.alt_text).where(Media.id.in_(wanted)))
    found: dict[int, str] = {media_id: alt for media_id, alt in rows}
    if article.featured_media_id and article.featured_media_id not in found:
        raise InvalidInput(f"No media item {article.featured_media_id}.", field="featured_media_id")
    missing = [i for i in body_ids if i not in found]
    if missing:
        raise InvalidInput(
            f"The body shows media item {missing[0]}, which does not exist.", field="body"
        )
    if article.status not in LIVE:
        return
    if article.featured_media_id and not found[article.featured_media_id].strip():
        raise InvalidInput(
            f"Media item {article.featured_media_id} has no alt text: add it "
            f"(PATCH /api/v1/media/{article.featured_media_id}) before publishing.",
            field="featured_media_id",
        )
    bare = [i for i in body_ids if not found[i].strip()]
    if bare:
        raise InvalidInput(
            f"Media item {bare[0]} in the body has no alt text: add it before publishing.",
            field="body",
        )


async def _record_body_media(session: AsyncSession, article: Article, before: str | None) -> None:
    """Keep `article_media` in step with the body, so a photo still shown cannot be deleted."""
    now_ids = media_ids(article.body)
    if before is not None and media_ids(before) == now_ids:
        return
    if before is not None:
        await session.execute(delete(article_media).where(article_media.c.article_id == article.id))
    if now_ids:
        await session.execute(
            insert(article_media),
            [{"article_id": article.id, "media_id": media_id} for media_id in now_ids],
        )


async def create(
    session: AsyncSession,
    data: ArticleCreate,
    principal: Principal,
    embeds: Collection[str] = tuple(EMBED_PROVIDERS),
) -> Article:
    """`embeds`: the providers whose embeds the body keeps (`EMBED_PROVIDERS`)."""
    now = utcnow()
    article = Article(
        author_id=principal.user.id,
        title=data.title,
        slug="",
        excerpt="",
        body="",
        status=data.status,
        number=None,
        categories=[],
        tags=[],
        corrections=[],
        comment_status=CommentStatus.open,
        created_at=now,
    )
    await _apply(session, article, data.model_dump(), principal, now, embeds)
    await _check_media(session, article, now)
    session.add(article)
    await session.flush()
    await _record_body_media(session, article, None)
    await search.index(session, article)
    await events.article_written(session, article, None, now)
    await invalidation.changed(session, None, invalidation.Place.of(article, now), now)
    return article


async def update(
    session: AsyncSession,
    article: Article,
    changes: dict[str, Any],
    principal: Principal,
    embeds: Collection[str] = tuple(EMBED_PROVIDERS),
) -> Article:
    now = utcnow()
    ensure_writable(article, principal, now)
    for key in ("title", "status", "body", "comment_status"):
        if key in changes and changes[key] is None:
            raise InvalidInput(f"{key} cannot be null.", field=key)
    before = events.article_state(article, now)
    place = invalidation.Place.of(article, now)
    neighbours: set[str] = set()
    if PLACE_FIELDS & changes.keys():
        neighbours = await invalidation.neighbours_before(session, place, now)
    body_before = article.body
    await _apply(session, article, changes, principal, now, embeds)
    await _check_media(session, article, now)
    await session.flush()
    await _record_body_media(session, article, body_before)
    await search.index(session, article)
    await events.article_written(session, article, before, now)
    await invalidation.changed(
        session, place, invalidation.Place.of(article, now), now, old_neighbours=neighbours
    )
    return article


def replacement(data: ArticleCreate) -> dict[str, Any]:
    """PUT semantics: every field is set; absent ones return to their defaults, except
    identity that a replace cannot sensibly reset (number, slug, author)."""
    changes = data.model_dump()
    for key in ("number", "slug", "author_id"):
        if changes[key] is None:
            del changes[key]
    return changes


def partial(data: ArticleUpdate) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True)


async def remove(session: AsyncSession, article: Article, principal: Principal) -> None:
    now = utcnow()
    ensure_writable(article, principal, now)
    place = invalidation.Place.of(article, now)
    neighbours = await invalidation.neighbours_before(session, place, now)
    await invalidation.changed(session, place, None, now, old_neighbours=neighbours)
    await events.article_deleted(session, article)
    await search.unindex(session, article.id)
    await session.delete(article)
    await session.flush()


# --- corrections and revisions ---------------------------------------------------------


async def add_correction(
    session: AsyncSession, article: Article, data: CorrectionCreate, principal: Principal
) -> Correction:
    now = utcnow()
    ensure_writable(article, principal, now)
    correction = Correction(
        article_id=article.id, kind=data.kind, text=data.text, noted_at=data.noted_at or now
    )
    article.corrections.append(correction)
    article.updated_at = now
    await events.article_touched(session, article)
    await session.flush()
    _touched(session, article, now)
    return correction


async def remove_correction(
    session: AsyncSession, article: Article, correction_id: int, principal: Principal
) -> None:
    ensure_writable(article, principal, utcnow())
    found = next((c for c in article.corrections if c.id == correction_id), None)
    if found is None:
        raise NotFound(f"No correction {correction_id} on article {article.id}.")
    article.corrections.remove(found)
    now = utcnow()
    article.updated_at = now
    await events.article_touched(session, article)
    await session.flush()
    _touched(session, article, now)


def _touched(session: AsyncSession, article: Article, now: datetime) -> None:
    """After a change that shows on the article's page but moves it nowhere."""
    if invalidation.Place.of(article, now).state == "live":
        invalidate(session, cache_keys.article(article.id), cache_keys.ARTICLES)


async def revisions(
    session: AsyncSession, article: Article, *, offset: int, limit: int
) -> tuple[list[Revision], int]:
    base = select(Revision).where(Revision.article_id == article.id)
    total = await session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = await session.scalars(
        base.options(selectinload(Revision.changed_by))
        .order_by(Revision.created_at.desc(), Revision.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


async def revision(session: AsyncSession, article: Article, revision_id: int) -> Revision:
    found = await session.scalar(
        select(Revision)
        .where(Revision.id == revision_id, Revision.article_id == article.id)
        .options(selectinload(Revision.changed_by))
    )
    if found is None:
        raise NotFound(f"No revision {revision_id} of article {article.id}.")
    return found


async def restore(
    session: AsyncSession, article: Article, revision_id: int, principal: Principal
) -> Article:
    """Bring back an old version; the version it replaces becomes a revision in turn."""
    old = await revision(session, article, revision_id)
    changes: dict[str, Any] = {
        "title": old.title,
        "kicker": old.kicker,
        "body": old.body,
        # A derived excerpt is derived again from the restored body.
        "excerpt": old.excerpt if article.excerpt_given else None,
    }
    return await update(session, article, changes, principal)


# --- listing ---------------------------------------------------------------------------

ORDERS = ("-published_at", "published_at", "-updated_at", "title", "relevance")
STATUS_FILTERS = ("draft", "scheduled", "published", "archived", "any")


@dataclass
class ArticleQuery:
    category: list[str] = field(default_factory=list)
    category_all: list[str] = field(default_factory=list)
    category_exclude: list[str] = field(default_factory=list)
    tag: list[str] = field(default_factory=list)
    tag_all: list[str] = field(default_factory=list)
    tag_exclude: list[str] = field(default_factory=list)
    author: list[str] = field(default_factory=list)
    after: datetime | None = None  # exclusive
    since: datetime | None = None  # inclusive
    before: datetime | None = None
    number: int | None = None
    q: str | None = None
    order: str | None = None
    status: str | None = None
    offset: int = 0
    limit: int = 10
    cursor: str | None = None


def _in_categories(ids: set[int]) -> ColumnElement[bool]:
    return Article.id.in_(
        select(article_categories.c.article_id).where(article_categories.c.category_id.in_(ids))
    )


def _unknown(noun: str, slug: str, field: str) -> NotFound:
    # One rule for every filter, here and in the feeds: naming what does not exist is a 404
    # (a section page for a mistyped slug is "not found", not an empty section).
    return NotFound(f"No {noun} with slug {slug!r}.", field=field, location="query")


async def _require_known(
    db: AsyncConnection,
    memo: ListingMemo,
    state: ListingState,
    now: datetime,
    known_slugs: Select[str],
    query: ArticleQuery,
    noun: str,
    fields: tuple[str, ...],
) -> None:
    """Every slug the filters in `fields` name must be in `known_slugs`."""
    wanted = sorted({slug for name in fields for slug in getattr(query, name)})
    if not wanted:
        return

    async def found() -> frozenset[str]:
        slugs = known_slugs.where(known_slugs.selected_columns[0].in_(wanted))
        return frozenset((await db.execute(slugs, {"now": now})).scalars())

    # Remembered only when every one is known: what makes a slug unknown (a delete, a slug
    # change, an author's last article going) moves the generation; a new tag does not.
    known = await memo.get(
        state, ("known", noun, tuple(wanted)), now, found, keep=lambda v: len(v) == len(wanted)
    )
    for name in fields:
        for slug in getattr(query, name):
            if slug not in known:
                raise _unknown(noun, slug, name)


def _has_tags(slugs: list[str]) -> ColumnElement[bool]:
    return Article.id.in_(
        select(article_tags.c.article_id)
        .join(Tag, Tag.id == article_tags.c.tag_id)
        .where(Tag.slug.in_(slugs))
    )


_NOW = bindparam("now", type_=UTCDateTime())
_TAG_SLUGS = select(Tag.slug)
# Authors as `/api/v1/authors` knows them: people with a public article.
_AUTHOR_SLUGS = select(User.slug).where(
    select(Article.id).where(Article.author_id == User.id, is_public(_NOW)).exists()
)


async def _category_conditions(
    db: AsyncConnection, query: ArticleQuery, memo: ListingMemo, state: ListingState, now: datetime
) -> list[ColumnElement[bool]]:
    wanted = sorted({*query.category, *query.category_all, *query.category_exclude})
    if not wanted:
        return []

    async def resolve() -> dict[str, set[int]]:
        return await categories.descendant_ids(db, wanted)

    trees = await memo.get(state, ("trees", tuple(wanted)), now, resolve)
    for name in ("category", "category_all", "category_exclude"):
        for slug in getattr(query, name):
            if not trees.get(slug):
                raise _unknown("category", slug, name)
    conditions: list[ColumnElement[bool]] = []
    if query.category:
        ids = set().union(*(trees.get(s, set()) for s in query.category))
        conditions.append(_in_categories(ids) if ids else Article.id.is_(None))
    for slug in query.category_all:
        ids = trees.get(slug, set())
        conditions.append(_in_categories(ids) if ids else Article.id.is_(None))
    excluded = set().union(*(trees.get(s, set()) for s in query.category_exclude))
    if excluded:
        conditions.append(not_(_in_categories(excluded)))
    return conditions


def _status_conditions(
    query: ArticleQuery, principal: Principal | None, now: datetime
) -> list[ColumnElement[bool]]:
    if query.status is None:
        return [is_public(now)]
    if principal is None:
        raise Unauthorized("Listing by status needs a token.")
    if not principal.can("articles:read"):
        raise Forbidden("Listing by status needs a token with articles:read.")
    conditions: list[ColumnElement[bool]] = []
    match query.status:
        case "published":
            conditions.append(is_public(now))
        case "scheduled":
            conditions.append(
                and_(Article.status == ArticleStatus.scheduled, Article.published_at > now)
            )
        case "draft" | "archived":
            conditions.append(Article.status == ArticleStatus(query.status))
    if not principal.sees_all_articles:
        conditions.append(or_(is_public(now), Article.author_id == principal.user.id))
    return conditions


def _sort_key(order: str, public_only: bool) -> tuple[Any, bool]:
    """The keyset column for an order, and whether it runs descending."""
    published = (
        Article.published_at
        if public_only
        else func.coalesce(Article.published_at, Article.created_at)
    )
    match order:
        case "-published_at":
            return published, True
        case "published_at":
            return published, False
        case "-updated_at":
            return Article.updated_at, True
        case _:
            return Article.title, False


def encode_cursor(order: str, value: Any, article_id: int) -> str:
    raw = orjson.dumps({"o": order, "v": value, "i": article_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str) -> tuple[Any, int]:
    """A cursor from `next_cursor`, or the 422 for anything a client could forge instead:
    only values a query can compare come out (a 32-bit id, a title-sized string, an instant
    that exists in UTC)."""
    bad = InvalidInput(
        "The cursor is not valid for this listing.", field="cursor", location="query"
    )
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(data, dict) or data.get("o") != order:
        raise bad
    value, article_id = data.get("v"), data.get("i")
    # bool is an int to Python, not to a cursor.
    if type(article_id) is not int or not 1 <= article_id <= MAX_ID or not isinstance(value, str):
        raise bad
    if order == "title":
        if len(value) > TITLE_MAX or "\x00" in value:
            raise bad
        return value, article_id
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise bad
        return in_utc(moment), article_id
    except ValueError:
        raise bad from None


@dataclass(frozen=True, slots=True)
class ArticlePage:
    items: list[ArticleRow]
    total: int
    next_cursor: str | None


async def list_articles(
    db: AsyncConnection,
    query: ArticleQuery,
    principal: Principal | None,
    memo: ListingMemo,
) -> ArticlePage:
    """One page of a listing, read through the read path (`reads`). The total, the category
    trees and positions deep in the list come from `memo` while the listing generation and
    the clock allow (see `app.articles.memo`)."""
    now = utcnow()
    order = query.order or ("relevance" if query.q else "-published_at")
    if order == "relevance" and not query.q:
        raise InvalidInput("order=relevance needs q.", field="order", location="query")
    if order == "relevance" and query.cursor:
        raise InvalidInput(
            "Cursors walk date or title orders; use page with order=relevance.",
            field="cursor",
            location="query",
        )
    state = await memo.state(db, now)
    conditions = _status_conditions(query, principal, now)
    conditions += await _category_conditions(db, query, memo, state, now)
    tag_fields = ("tag", "tag_all", "tag_exclude")
    await _require_known(db, memo, state, now, _TAG_SLUGS, query, "tag", tag_fields)
    await _require_known(db, memo, state, now, _AUTHOR_SLUGS, query, "author", ("author",))
    if query.tag:
        conditions.append(_has_tags(query.tag))
    conditions += [_has_tags([slug]) for slug in query.tag_all]
    if query.tag_exclude:
        conditions.append(not_(_has_tags(query.tag_exclude)))
    if query.author:
        conditions.append(Article.author_id.in_(select(User.id).where(User.slug.in_(query.author))))
    if query.after is not None:
        conditions.append(Article.published_at > query.after)
    if query.since is not None:
        conditions.append(Article.published_at >= query.since)
    if query.before is not None:
        conditions.append(Article.published_at < query.before)
    if query.number is not None:
        conditions.append(Article.number == query.number)

    matching = select(Article.id).where(*conditions)
    page = reads.list_select(*conditions)
    score: ColumnElement[float] | None = None
    if query.q:
        page, _ = search.apply(page, query.q, db.dialect.name)
        matching, score = search.apply(matching, query.q, db.dialect.name)
    listing = _listing_key(query, principal)

    async def count() -> int:
        return (await db.scalar(select(func.count()).select_from(matching.subquery()))) or 0

    total = await memo.get(state, ("total", listing), now, count)

    offset = 0 if query.cursor else query.offset
    if order == "relevance":
        assert score is not None
        newest, _ = _sort_key("-published_at", query.status is None)
        recency = (newest.desc(), Article.id.desc())

        async def rank_window() -> tuple[list[int], tuple[Any, int] | None]:
            window = (
                matching.add_columns(newest.label("at"), score.label("score"))
                .order_by(*recency)
                .limit(RELEVANCE_WINDOW)
                .subquery()
            )
            found = (
                await db.execute(
                    select(window.c.id, window.c.at).order_by(
                        window.c.score.desc(), window.c.at.desc(), window.c.id.desc()
                    )
                )
            ).all()
            if len(found) < RELEVANCE_WINDOW:
                return [row.id for row in found], None
            oldest = min(found, key=lambda row: (row.at, row.id))
            return [row.id for row in found], (oldest.at, oldest.id)

        ranked, edge = await memo.get(state, ("ranked", listing), now, rank_window)
        chosen = ranked[offset : offset + query.limit + 1]
        rows = []
        if chosen:
            # Known matches (the memo is exact for this generation): fetched by key alone.
            picked = await db.execute(reads.list_select(Article.id.in_(chosen)))
            by_id = {row.id: row for row in picked}
            rows = [by_id[i] for i in chosen if i in by_id]
        if edge is not None and (need := query.limit + 1 - len(chosen)) > 0:
            outside = page.where(tuple_(newest, Article.id) < tuple_(*edge)).order_by(*recency)
            skip = max(0, offset - len(ranked))
            rows += (await db.execute(outside.offset(skip).limit(need))).all()
        return ArticlePage(await reads.rows_with_tags(db, rows[: query.limit]), total, None)

    key, descending = _sort_key(order, query.status is None)
    ordered = (key.desc(), Article.id.desc()) if descending else (key, Article.id)
    mark: tuple[Any, int] | None = None
    if query.cursor:
        mark = _decode_cursor(query.cursor, order)
    elif offset >= DEEP_OFFSET and order in STABLE_ORDERS:
        # Deep in a list, find where the page starts once per generation (an index-only
        # walk of the keys), then read the page by keyset like a cursor does.

        async def boundary() -> tuple[Any, int] | None:
            row = (
                await db.execute(
                    matching.add_columns(key).order_by(*ordered).offset(offset - 1).limit(1)
                )
            ).first()
            return None if row is None else (row[1], row[0])

        mark = await memo.get(state, ("at", listing, order, offset), now, boundary)
        if mark is None:
            return ArticlePage([], total, None)
        offset = 0
    if mark is not None:
        position, bound = tuple_(key, Article.id), tuple_(*mark)
        page = page.where(position < bound if descending else position > bound)
    page = page.order_by(*ordered)
    rows = (await db.execute(page.offset(offset).limit(query.limit + 1))).all()
    items = await reads.rows_with_tags(db, rows[: query.limit])
    next_cursor = None
    if len(rows) > query.limit and items:
        last = items[-1]
        next_cursor = encode_cursor(
            order, _cursor_value(last, order, query.status is None), last.id
        )
    return ArticlePage(items, total, next_cursor)


def _listing_key(query: ArticleQuery, principal: Principal | None) -> Hashable:
    """What decides a listing's membership: its filters, and whose drafts it may include."""
    viewer = None
    if query.status is not None and principal is not None and not principal.sees_all_articles:
        viewer = principal.user.id
    return (
        tuple(query.category),
        tuple(query.category_all),
        tuple(query.category_exclude),
        tuple(query.tag),
        tuple(query.tag_all),
        tuple(query.tag_exclude),
        tuple(query.author),
        query.after,
        query.since,
        query.before,
        query.number,
        query.q,
        query.status,
        viewer,
    )


def _cursor_value(article: Shown, order: str, public_only: bool) -> Any:
    if order == "title":
        return article.title
    if order == "-updated_at":
        return article.updated_at.isoformat()
    moment = article.published_at if public_only or article.published_at else article.created_at
    assert moment is not None
    return moment.isoformat()


def comments_close_at(article: Visibility, settings: Settings) -> datetime | None:
    if article.comments_close_at is not None:
        return article.comments_close_at
    if settings.comments_close_after_days and article.published_at is not None:
        try:
            return article.published_at + timedelta(days=settings.comments_close_after_days)
        except OverflowError:  # published near the end of the calendar: they never close
            return None
    return None


def comments_open(article: Visibility, settings: Settings, now: datetime) -> bool:
    if article.comment_status != CommentStatus.open:
        return False
    closes = comments_close_at(article, settings)
    return closes is None or now < closes
