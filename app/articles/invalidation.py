"""Which cached pages an article write changes (the keys of `app.cache.keys`).

Readers see an article on its page, in lists, feeds and sitemaps, and as the previous or
next link of its neighbours in its primary category. A write is described by the article's
`Place` before and after; `changed` names the keys whose pages differ, and `came_due` does
the same for scheduled articles whose time has come (no write marks that moment). Nothing
is invalidated for a change readers cannot see (a draft, or a scheduled article before its
time, which only wakes the schedule watchers).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import queries, reads
from app.articles.models import Article, ArticleStatus
from app.articles.queries import LIVE
from app.cache import keys
from app.cache.publish import invalidate

State = Literal["live", "scheduled"] | None


@dataclass(frozen=True, slots=True)
class Place:
    """What readers can see of an article at one moment."""

    id: int
    state: State
    published_at: datetime | None
    category_id: int | None
    # What decides which lists hold it (the title also where, in title order).
    filed: tuple[frozenset[int], frozenset[int], int, int | None]
    title: str
    # What search matches besides the title.
    text: tuple[str | None, str, str]

    @classmethod
    def of(cls, article: Article, now: datetime) -> Place:
        state: State = None
        if article.status in LIVE and article.published_at is not None:
            state = "live" if article.published_at <= now else "scheduled"
        return cls(
            id=article.id,
            state=state,
            published_at=article.published_at,
            category_id=article.category_id,
            filed=(
                frozenset(c.id for c in article.categories),
                frozenset(t.id for t in article.tags),
                article.author_id,
                article.number,
            ),
            title=article.title,
            text=(article.kicker, article.excerpt, article.body),
        )


async def _neighbours(
    session: AsyncSession,
    article_id: int,
    category_id: int | None,
    published_at: datetime | None,
    now: datetime,
) -> set[str]:
    db = await session.connection()
    around = await reads.surroundings(db, article_id, category_id, published_at, now)
    return {keys.article(link.id) for link in (around.previous, around.next) if link is not None}


async def neighbours_before(session: AsyncSession, place: Place | None, now: datetime) -> set[str]:
    """Before a write: the pages that show this article as their neighbour."""
    if place is None or place.state != "live":
        return set()
    return await _neighbours(session, place.id, place.category_id, place.published_at, now)


async def changed(
    session: AsyncSession,
    before: Place | None,
    after: Place | None,
    now: datetime,
    *,
    old_neighbours: Collection[str] = (),
) -> None:
    """Invalidate, once the transaction commits, what the change from `before` to `after`
    (None: not there) changed for readers. `old_neighbours` from `neighbours_before`."""
    found: set[str] = set()
    if any(p is not None and p.state == "scheduled" for p in (before, after)):
        found.add(keys.SCHEDULE)
    seen_before = before is not None and before.state == "live"
    seen_after = after is not None and after.state == "live"
    if seen_before or seen_after:
        place = after if after is not None else before
        assert place is not None
        # SCHEDULE too: the write may have moved the time its comments close by the clock.
        found |= {keys.article(place.id), keys.ARTICLES, keys.SCHEDULE}
        moved = (
            seen_before != seen_after
            or before is None
            or after is None
            or before.published_at != after.published_at
            or before.category_id != after.category_id
        )
        if seen_before != seen_after:
            found |= {keys.comments(place.id), keys.LISTINGS, keys.SEARCH}
        else:
            assert before is not None
            assert after is not None
            retitled = before.title != after.title
            if before.filed != after.filed or retitled or moved:
                found.add(keys.LISTINGS)
            if before.text != after.text or retitled:
                found.add(keys.SEARCH)
        if moved:
            found.update(old_neighbours)
            if seen_after and after is not None:
                found |= await _neighbours(
                    session, after.id, after.category_id, after.published_at, now
                )
    if found:
        invalidate(session, *found)


async def came_due(session: AsyncSession, since: datetime, until: datetime) -> int:
    """Invalidate what the scheduled articles that became public in (since, until] changed;
    returns how many there were."""
    rows = (
        await session.execute(
            select(Article.id, Article.category_id, Article.published_at).where(
                Article.status == ArticleStatus.scheduled,
                Article.published_at > since,
                Article.published_at <= until,
            )
        )
    ).all()
    found: set[str] = set()
    for article_id, category_id, published_at in rows:
        found |= {keys.article(article_id), keys.comments(article_id)}
        found |= await _neighbours(session, article_id, category_id, published_at, until)
    if rows:
        invalidate(session, *found, keys.LISTINGS, keys.SEARCH, keys.ARTICLES)
    return len(rows)


async def comments_closed(
    session: AsyncSession, since: datetime, until: datetime, close_after_days: int
) -> None:
    """Invalidate the pages of articles whose comments closed by the clock in (since, until]:
    they say `comments_open`."""
    closed = await queries.closed_between(session, since, until, close_after_days)
    if closed:
        invalidate(session, *(key for i in closed for key in (keys.article(i), keys.comments(i))))
