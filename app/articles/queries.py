"""Query building blocks other domains need about articles (visibility above all)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus

# Scheduled articles are public from their `published_at` on, with no job flipping a flag:
# visibility is decided here, at query time.
LIVE = (ArticleStatus.published, ArticleStatus.scheduled)
# The statuses are written into the SQL, not sent as parameters: PostgreSQL can then match
# the partial index on public articles in a generic (prepared once) plan as well.
LIVE_STATUS: ColumnElement[bool] = Article.__table__.c.status.in_(
    bindparam("live_statuses", list(LIVE), expanding=True, literal_execute=True)
)


def is_public(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Public at `now`: a value, or a bound parameter in a statement built once."""
    return and_(LIVE_STATUS, Article.__table__.c.published_at <= now)


async def next_scheduled(session: AsyncSession, now: datetime) -> datetime | None:
    """When the next scheduled article becomes public, if one is waiting."""
    return await session.scalar(
        select(func.min(Article.published_at)).where(
            Article.status == ArticleStatus.scheduled, Article.published_at > now
        )
    )


def _closing_between(
    since: datetime, until: datetime | None, close_after_days: int
) -> ColumnElement[bool]:
    """Public, open articles whose comments close by the clock in (since, until]: at their
    own close time, or COMMENTS_CLOSE_AFTER_DAYS after publication (compared on
    published_at itself, since SQLite cannot add an interval to a column)."""
    c = Article.__table__.c
    own = c.comments_close_at > since
    if until is not None:
        own = and_(own, c.comments_close_at <= until)
    when = own
    if close_after_days:
        days = timedelta(days=close_after_days)
        derived = and_(c.comments_close_at.is_(None), c.published_at > since - days)
        if until is not None:
            derived = and_(derived, c.published_at <= until - days)
        when = or_(own, derived)
    return and_(LIVE_STATUS, c.comment_status == "open", when)


async def next_closing(
    session: AsyncSession, after: datetime, close_after_days: int
) -> datetime | None:
    """When the comments of a public article next close by the clock alone."""
    c = Article.__table__.c
    found = []
    own = await session.scalar(
        select(func.min(c.comments_close_at)).where(_closing_between(after, None, 0))
    )
    if own is not None:
        found.append(own)
    if close_after_days:
        first = await session.scalar(
            select(func.min(c.published_at)).where(
                _closing_between(after, None, close_after_days), c.comments_close_at.is_(None)
            )
        )
        if first is not None:
            found.append(first + timedelta(days=close_after_days))
    return min(found) if found else None


async def closed_between(
    session: AsyncSession, since: datetime, until: datetime, close_after_days: int
) -> list[int]:
    """The public articles whose comments closed by the clock in (since, until]."""
    rows = await session.scalars(
        select(Article.id).where(_closing_between(since, until, close_after_days))
    )
    return list(rows)
