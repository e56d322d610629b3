"""Query building blocks other domains need about articles (visibility above all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_

from app.articles.models import Article, ArticleStatus

# Scheduled articles are public from their `published_at` on, with no job flipping a flag:
# visibility is decided here, at query time.
LIVE = (ArticleStatus.published, ArticleStatus.scheduled)


def is_public(now: datetime) -> ColumnElement[bool]:
    return and_(Article.status.in_(LIVE), Article.published_at <= now)
