"""Readers' comment pages through the read path: prebuilt Core statements on an autocommit
connection (see app.articles.reads for why), plain rows instead of ORM objects."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.articles.models import Article
from app.articles.queries import is_public
from app.comments.models import Comment, CommentState
from app.core.db import UTCDateTime

_c = Comment.__table__.c
_a = Article.__table__.c
_ARTICLE = bindparam("article_id", type_=Integer())

_PUBLIC_ARTICLE = select(
    exists().where(_a.id == _ARTICLE, is_public(bindparam("now", type_=UTCDateTime())))
)
# Top-level comments whose thread has something approved to show.
_ROOTS = select(_c.id).where(
    _c.article_id == _ARTICLE,
    _c.parent_id.is_(None),
    _c.id.in_(
        select(_c.root_id).where(_c.article_id == _ARTICLE, _c.status == CommentState.approved)
    ),
)
# The same number, read off one index: every comment's root_id is its thread's first
# comment (its own id for a thread starter).
_COUNT_ROOTS = select(func.count(_c.root_id.distinct())).where(
    _c.article_id == _ARTICLE, _c.status == CommentState.approved
)
_PAGE_LIMITS = {
    "limit": bindparam("limit", type_=Integer()),
    "offset": bindparam("offset", type_=Integer()),
}
_ROOTS_OLDEST = (
    _ROOTS.order_by(_c.created_at, _c.id)
    .limit(_PAGE_LIMITS["limit"])
    .offset(_PAGE_LIMITS["offset"])
)
_ROOTS_NEWEST = (
    _ROOTS.order_by(_c.created_at.desc(), _c.id.desc())
    .limit(_PAGE_LIMITS["limit"])
    .offset(_PAGE_LIMITS["offset"])
)
_THREADS = (
    select(
        _c.id,
        _c.article_id,
        _c.parent_id,
        _c.depth,
        _c.status,
        _c.author_name,
        _c.author_url,
        _c.content_html,
        _c.created_at,
        _c.by_staff,
    )
    .where(_c.article_id == _ARTICLE, _c.root_id.in_(bindparam("roots", expanding=True)))
    .order_by(_c.created_at, _c.id)
)


@dataclass(slots=True)
class CommentRow:
    """A comment as readers may see it: no email, address or user agent is even read."""

    id: int
    article_id: int
    parent_id: int | None
    depth: int
    status: CommentState
    author_name: str
    author_url: str | None
    content_html: str
    created_at: datetime
    by_staff: bool


@dataclass(slots=True)
class Node:
    comment: CommentRow
    visible: bool
    replies: list[Node]

    @property
    def removed(self) -> bool:
        return self.comment.status != CommentState.approved


async def article_is_public(db: AsyncConnection, article_id: int, now: datetime) -> bool:
    return bool(await db.scalar(_PUBLIC_ARTICLE, {"article_id": article_id, "now": now}))


async def threads(
    db: AsyncConnection, article_id: int, *, offset: int, limit: int, newest_first: bool
) -> tuple[list[Node], int]:
    """A page of top-level threads that have something to show, each whole; and how many
    such threads there are."""
    total = await db.scalar(_COUNT_ROOTS, {"article_id": article_id}) or 0
    roots = _ROOTS_NEWEST if newest_first else _ROOTS_OLDEST
    params: dict[str, Any] = {"article_id": article_id, "limit": limit, "offset": offset}
    page_roots = list(await db.scalars(roots, params))
    if not page_roots:
        return [], total
    rows = await db.execute(_THREADS, {"article_id": article_id, "roots": page_roots})
    children: defaultdict[int | None, list[CommentRow]] = defaultdict(list)
    for row in rows:
        children[row.parent_id].append(CommentRow(*tuple(row)))

    def build(comment: CommentRow) -> Node:
        replies = [r for r in (build(child) for child in children.get(comment.id, [])) if r.visible]
        visible = comment.status == CommentState.approved or bool(replies)
        return Node(comment, visible, replies)

    by_id = {c.id: c for c in children[None]}
    nodes = [build(by_id[root_id]) for root_id in page_roots if root_id in by_id]
    return [n for n in nodes if n.visible], total
