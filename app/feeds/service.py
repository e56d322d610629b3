"""What feeds and sitemaps list: the newest public articles, and every public article in
pages that stay cheap at a million rows (a COUNT for the index, keyset ranges for a page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.articles.models import Article, article_categories, article_tags
from app.articles.queries import is_public
from app.categories import service as categories
from app.categories.models import Category
from app.core.errors import NotFound
from app.media.models import Media
from app.tags import service as tags
from app.tags.models import Tag

# sitemaps.org allows 50,000 URLs a file; 10,000 keeps each page quick to build and fetch.
SITEMAP_PAGE_SIZE = 10_000
# Google News reads articles published in the last two days, at most 1,000 a sitemap.
NEWS_WINDOW = timedelta(days=2)
NEWS_MAX = 1_000

FEED_OPTIONS = (
    selectinload(Article.author),
    selectinload(Article.categories),
    selectinload(Article.tags),
    selectinload(Article.featured_media),
)


def last_change(updated_at: datetime, published_at: datetime | None) -> datetime:
    """When an article last changed for readers. A scheduled article written yesterday that
    went live an hour ago changed an hour ago: its `updated_at` alone would say yesterday."""
    return max(updated_at, published_at) if published_at is not None else updated_at


# --- feeds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedFilter:
    category: Category | None = None
    tag: Tag | None = None


async def feed_filter(session: AsyncSession, category: str | None, tag: str | None) -> FeedFilter:
    """The category and tag named by slug; an unknown one is a 404."""
    return FeedFilter(
        category=await categories.by_slug(session, category) if category is not None else None,
        tag=await tags.by_slug(session, tag) if tag is not None else None,
    )


async def latest(
    session: AsyncSession, where: FeedFilter, *, limit: int, now: datetime
) -> list[Article]:
    """The newest public articles, a category's subcategories included, with what an
    entry shows (author, categories, tags) loaded."""
    query = select(Article).where(is_public(now))
    if where.category is not None:
        slug = where.category.slug
        ids = (await categories.descendant_ids(session, [slug]))[slug]
        if not ids:  # deleted between the two reads
            raise NotFound(f"No category with slug {slug!r}.")
        query = query.where(
            Article.id.in_(
                select(article_categories.c.article_id).where(
                    article_categories.c.category_id.in_(ids)
                )
            )
        )
    if where.tag is not None:
        query = query.where(
            Article.id.in_(
                select(article_tags.c.article_id).where(article_tags.c.tag_id == where.tag.id)
            )
        )
    rows = await session.scalars(
        query.options(*FEED_OPTIONS)
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(limit)
    )
    return list(rows)


# --- sitemaps --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SitemapSummary:
    articles: int
    last_change: datetime | None


@dataclass(frozen=True, slots=True)
class Located:
    """What a sitemap `<url>` needs: enough to build the address, and when it changed."""

    id: int
    number: int
    slug: str
    last_change: datetime
    # The featured image's renditions (`Media.sizes`), for the image sitemap entry.
    image: dict[str, Any] | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class NewsItem(Located):
    title: str
    published_at: datetime


async def sitemap_summary(session: AsyncSession, now: datetime) -> SitemapSummary:
    """How many public articles there are and when the newest change was: one aggregate
    query, however many articles."""
    count, updated, published = (
        await session.execute(
            select(
                func.count(), func.max(Article.updated_at), func.max(Article.published_at)
            ).where(is_public(now))
        )
    ).one()
    newest = last_change(updated, published) if updated is not None else None
    return SitemapSummary(articles=count, last_change=newest)


def page_count(articles: int, size: int) -> int:
    return -(-articles // size)


async def sitemap_page(
    session: AsyncSession, page: int, *, size: int, now: datetime
) -> list[Located]:
    """Page `page` (from 1) of the public articles in id order, `size` a page. The offset
    runs over the id column alone to find where the page starts; the page itself is a
    primary-key range read, and only the columns a `<url>` needs are loaded."""
    public = is_public(now)
    first = await session.scalar(
        select(Article.id).where(public).order_by(Article.id).offset((page - 1) * size).limit(1)
    )
    if first is None:
        return []
    rows = await session.execute(
        select(
            Article.id,
            Article.number,
            Article.slug,
            Article.updated_at,
            Article.published_at,
            Media.sizes,
        )
        .outerjoin(Media, Media.id == Article.featured_media_id)
        .where(public, Article.id >= first)
        .order_by(Article.id)
        .limit(size)
    )
    return [
        Located(
            id=id_,
            number=number,
            slug=slug,
            last_change=last_change(updated, published),
            image=sizes,
        )
        for id_, number, slug, updated, published, sizes in rows
    ]


async def news(session: AsyncSession, now: datetime) -> list[NewsItem]:
    """Public articles published in the last two days, newest first, at most 1,000."""
    rows = await session.execute(
        select(
            Article.id,
            Article.number,
            Article.slug,
            Article.updated_at,
            Article.published_at,
            Article.title,
        )
        .where(is_public(now), Article.published_at >= now - NEWS_WINDOW)
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(NEWS_MAX)
    )
    items = []
    for id_, number, slug, updated, published, title in rows:
        assert published is not None  # the window above leaves out unpublished rows
        items.append(
            NewsItem(
                id=id_,
                number=number,
                slug=slug,
                last_change=last_change(updated, published),
                title=title,
                published_at=published,
            )
        )
    return items
