"""The read path: articles as plain rows from prebuilt Core statements.

Reads are most of a news site's traffic. Through the ORM, each query and each loaded
collection costs several hundred microseconds of Python (identity map, loader strategies,
statement building); profiled, that was over half of an article page's time. Here a public
article page is two statements compiled once (the article with its author and category; then
its tags, categories, breadcrumbs and neighbours in one UNION), and a list page is one
statement for the rows plus one for all their tags. The rows become light objects that the
views render exactly as they render ORM objects.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    bindparam,
    exists,
    literal,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from app.articles.models import (
    Article,
    ArticleStatus,
    CommentStatus,
    Correction,
    CorrectionKind,
    article_categories,
    article_tags,
)
from app.articles.queries import is_public
from app.cache import keys
from app.cache.store import Refresher
from app.categories.models import Category
from app.categories.service import MAX_DEPTH
from app.core.db import UTCDateTime, read_with, utcnow
from app.media.models import Media, article_media
from app.media.views import SHOWN_COLUMNS, MediaRow
from app.tags.models import Tag
from app.users.models import User


@dataclass(slots=True)
class AuthorRow:
    display_name: str
    slug: str
    avatar_url: str | None


@dataclass(slots=True)
class RefRow:
    """A category or tag as articles show it."""

    id: int
    name: str
    slug: str


@dataclass(slots=True)
class CorrectionRow:
    id: int
    kind: CorrectionKind
    text: str
    noted_at: datetime


@dataclass(slots=True)
class LinkRow:
    id: int
    number: int
    slug: str
    title: str
    published_at: datetime | None


@dataclass(slots=True)
class ArticleRow:
    """An article as read for display; attribute-compatible with the ORM `Article`."""

    id: int
    number: int
    slug: str
    title: str
    kicker: str | None
    excerpt: str
    status: ArticleStatus
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    author_id: int
    byline: str | None
    source_name: str | None
    source_url: str | None
    featured_image_url: str | None
    featured_image_caption: str | None
    category_id: int | None
    comment_status: CommentStatus
    comments_close_at: datetime | None
    word_count: int
    comment_count: int
    version: int
    featured_media_id: int | None
    author: AuthorRow
    category: RefRow | None
    featured_media: MediaRow | None = None
    body: str = ""
    has_corrections: bool = False
    tags: list[RefRow] = field(default_factory=list)
    categories: list[RefRow] = field(default_factory=list)
    corrections: list[CorrectionRow] = field(default_factory=list)
    body_media: list[MediaRow] = field(default_factory=list)


@dataclass(slots=True)
class Surroundings:
    """What an article page shows around the article."""

    breadcrumbs: list[RefRow]
    previous: LinkRow | None
    next: LinkRow | None


_ARTICLES = Article.__table__
_CATEGORIES = Category.__table__
_TAGS = Tag.__table__
_a = _ARTICLES.c
_u = User.__table__.c
_c = _CATEGORIES.c
_t = _TAGS.c
_k = Correction.__table__.c
_MEDIA = Media.__table__
_SCALARS = (
    *("id", "number", "slug", "title", "kicker", "excerpt", "status", "published_at"),
    *("created_at", "updated_at", "author_id", "byline", "source_name", "source_url"),
    *("featured_image_url", "featured_image_caption", "category_id", "comment_status"),
    *("comments_close_at", "word_count", "comment_count", "version", "featured_media_id"),
)
_JOINED = (
    _u.display_name.label("author_display_name"),
    _u.slug.label("author_slug"),
    _u.avatar_url.label("author_avatar_url"),
    _c.name.label("category_name"),
    _c.slug.label("category_slug"),
    *(_MEDIA.c[name].label(f"featured_{name}") for name in SHOWN_COLUMNS),
)
_FROM = (
    _ARTICLES.join(User.__table__, _u.id == _a.author_id)
    .outerjoin(_CATEGORIES, _c.id == _a.category_id)
    .outerjoin(_MEDIA, _MEDIA.c.id == _a.featured_media_id)
)
LIST_COLUMNS: tuple[Any, ...] = (*(_a[name] for name in _SCALARS), *_JOINED)
_NOW = bindparam("now", type_=UTCDateTime())


def list_select(*conditions: ColumnElement[bool]) -> Select[Any]:
    """The list-item columns of the articles matching `conditions` (order and limit to add)."""
    return select(*LIST_COLUMNS).select_from(_FROM).where(*conditions)


def _row(row: Any, *, body: bool = False) -> ArticleRow:
    m = row._mapping
    category_id = m["category_id"]
    return ArticleRow(
        **{name: m[name] for name in _SCALARS},
        author=AuthorRow(m["author_display_name"], m["author_slug"], m["author_avatar_url"]),
        category=(
            RefRow(category_id, m["category_name"], m["category_slug"])
            if category_id is not None
            else None
        ),
        featured_media=(
            MediaRow(*(m[f"featured_{name}"] for name in SHOWN_COLUMNS))
            if m["featured_id"] is not None
            else None
        ),
        body=m["body"] if body else "",
        has_corrections=bool(m["has_corrections"]) if body else False,
    )


# --- one article ------------------------------------------------------------------------

_DETAIL = (
    select(
        *LIST_COLUMNS,
        _a.body,
        exists().where(_k.article_id == _a.id).correlate(_ARTICLES).label("has_corrections"),
    )
    .select_from(_FROM)
    .where(is_public(_NOW))
)
_BY = {
    "id": _DETAIL.where(_a.id == bindparam("key", type_=Integer())),
    "slug": _DETAIL.where(_a.slug == bindparam("key", type_=String())),
    "number": _DETAIL.where(_a.number == bindparam("key", type_=Integer())),
}


_COUNT = select(_a.comment_count).where(_a.id == bindparam("key", type_=Integer()), is_public(_NOW))


async def public_comment_count(db: AsyncConnection, article_id: int, now: datetime) -> int | None:
    """A public article's approved comments (what its page shows of them), or None."""
    return (await db.execute(_COUNT, {"key": article_id, "now": now})).scalar()


# An article's page, by id, slug or number (not its comments, revisions or other pages).
_PAGE_PATHS = re.compile(r"/api/v1/articles/(?:\d+|by-slug/[^/]+|by-number/\d+)")


def comment_count_refresher(engine: Callable[[], AsyncEngine]) -> Refresher:
    """An article's page shows its comments only as `comment_count`: a comment refreshes
    that number in the stored page instead of dropping it. `engine`: the app's read engine,
    once it exists."""

    async def value(article_id: int) -> int | None:
        now = utcnow()
        return await read_with(engine(), lambda db: public_comment_count(db, article_id, now))

    return Refresher(keys.COMMENTS, b'"comment_count":', value, _PAGE_PATHS)


async def public_article(
    db: AsyncConnection, now: datetime, *, by: str, key: int | str
) -> ArticleRow | None:
    """The public article with this id, slug or number, or None when there is none (or it
    is not public)."""
    row = (await db.execute(_BY[by], {"key": key, "now": now})).first()
    return _row(row, body=True) if row is not None else None


def _surroundings_statement() -> Any:
    """Tags, categories, breadcrumbs and both neighbours of one article, as one UNION of
    rows shaped (kind, ord, id, name, slug, number, published_at)."""
    article_id = bindparam("article_id", type_=Integer())
    category_id = bindparam("category_id", type_=Integer())
    published_at = bindparam("published_at", type_=UTCDateTime())
    none_number = null().cast(Integer())
    none_time = null().cast(UTCDateTime())

    def refs(kind: str, table: Any, link: Any, link_column: Any) -> Select[Any]:
        return (
            select(
                literal(kind).label("kind"),
                literal(0).label("ord"),
                table.c.id,
                table.c.name,
                table.c.slug,
                none_number.label("number"),
                none_time.label("published_at"),
            )
            .join(link, link_column == table.c.id)
            .where(link.c.article_id == article_id)
        )

    up = (
        select(_c.id, _c.parent_id, literal(0, Integer()).label("depth"))
        .where(_c.id == category_id)
        .cte("ancestors", recursive=True)
    )
    up = up.union_all(
        select(_c.id, _c.parent_id, up.c.depth + 1)
        .join(up, _c.id == up.c.parent_id)
        .where(up.c.depth < MAX_DEPTH)
    )
    crumbs = select(
        literal("b").label("kind"),
        up.c.depth.label("ord"),
        _c.id,
        _c.name,
        _c.slug,
        none_number.label("number"),
        none_time.label("published_at"),
    ).join(up, _c.id == up.c.id)

    key = tuple_(_a.published_at, _a.id)
    here = tuple_(published_at, article_id)
    link = (
        _a.id,
        _a.title.label("name"),
        _a.slug,
        _a.number,
        _a.published_at,
    )

    def neighbour(kind: str, newer: bool) -> Select[Any]:
        found = (
            select(literal(kind).label("kind"), literal(0).label("ord"), *link)
            .where(_a.category_id == category_id, is_public(_NOW))
            .where(key > here if newer else key < here)
            .order_by(
                *((_a.published_at, _a.id) if newer else (_a.published_at.desc(), _a.id.desc()))
            )
            .limit(1)
            .subquery()
        )
        return select(found)

    every = union_all(
        refs("t", _TAGS, article_tags, article_tags.c.tag_id),
        refs("c", _CATEGORIES, article_categories, article_categories.c.category_id),
        crumbs,
        neighbour("p", newer=False),
        neighbour("n", newer=True),
    ).subquery()
    return select(every).order_by(every.c.kind, every.c.ord.desc(), every.c.name)


_SURROUNDINGS = _surroundings_statement()
_CORRECTIONS = (
    select(_k.id, _k.kind, _k.text, _k.noted_at)
    .where(_k.article_id == bindparam("article_id", type_=Integer()))
    .order_by(_k.noted_at, _k.id)
)


async def _surrounding(
    db: AsyncConnection, article_id: int, category_id: int | None, published_at: Any, now: datetime
) -> tuple[list[RefRow], list[RefRow], Surroundings]:
    """(tags, categories, surroundings) of one article, from one statement."""
    rows = await db.execute(
        _SURROUNDINGS,
        {
            "article_id": article_id,
            "category_id": category_id,
            "published_at": published_at,
            "now": now,
        },
    )
    tags: list[RefRow] = []
    categories: list[RefRow] = []
    crumbs: list[RefRow] = []
    around: dict[str, LinkRow] = {}
    for kind, _ord, id_, name, slug, number, at in rows:
        if kind == "t":
            tags.append(RefRow(id_, name, slug))
        elif kind == "c":
            categories.append(RefRow(id_, name, slug))
        elif kind == "b":
            crumbs.append(RefRow(id_, name, slug))
        else:
            around[kind] = LinkRow(id_, number, slug, name, at)
    return tags, categories, Surroundings(crumbs, around.get("p"), around.get("n"))


_BODY_MEDIA = (
    select(*(_MEDIA.c[name] for name in SHOWN_COLUMNS))
    .join(article_media, article_media.c.media_id == _MEDIA.c.id)
    .where(article_media.c.article_id == bindparam("article_id", type_=Integer()))
    .order_by(_MEDIA.c.id)
)


async def complete(db: AsyncConnection, article: ArticleRow, now: datetime) -> Surroundings:
    """Fill in the article's tags, categories, corrections and body images; return what
    surrounds it."""
    article.tags, article.categories, around = await _surrounding(
        db, article.id, article.category_id, article.published_at, now
    )
    if article.has_corrections:
        found = await db.execute(_CORRECTIONS, {"article_id": article.id})
        article.corrections = [CorrectionRow(*row) for row in found]
    # Only pages whose body shows library images pay for the query.
    if "data-media-id" in article.body:
        shown = await db.execute(_BODY_MEDIA, {"article_id": article.id})
        article.body_media = [MediaRow(*row) for row in shown]
    return around


async def surroundings(
    db: AsyncConnection, article_id: int, category_id: int | None, published_at: Any, now: datetime
) -> Surroundings:
    """Breadcrumbs and public neighbours of any article (the editing view's, drafts too)."""
    _tags, _categories, around = await _surrounding(db, article_id, category_id, published_at, now)
    return around


# --- lists ------------------------------------------------------------------------------

_TAGS_OF = (
    select(article_tags.c.article_id, _t.id, _t.name, _t.slug)
    .join(_TAGS, _t.id == article_tags.c.tag_id)
    .where(article_tags.c.article_id.in_(bindparam("ids", expanding=True)))
    .order_by(_t.name, _t.id)
)


async def rows_with_tags(db: AsyncConnection, rows: Sequence[Any]) -> list[ArticleRow]:
    """List items from `list_select` rows, with every item's tags from one more query."""
    items = [_row(row) for row in rows]
    if not items:
        return items
    by_id = {item.id: item for item in items}
    tags: defaultdict[int, list[RefRow]] = defaultdict(list)
    for article_id, *ref in await db.execute(_TAGS_OF, {"ids": list(by_id)}):
        tags[article_id].append(RefRow(*ref))
    for article_id, refs in tags.items():
        by_id[article_id].tags = refs
    return items
