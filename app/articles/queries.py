"""Query building blocks other domains need about articles (visibility above all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, func, select
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
