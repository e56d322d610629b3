"""Feeds (RSS, Atom, JSON Feed) and sitemaps, for feed readers, aggregators and crawlers.

Every address in them is absolute, built from SITE_URL and ARTICLE_URL_TEMPLATE. Each
response carries `Last-Modified` and a five-minute public `Cache-Control`; the cache
middleware adds the ETag and answers revalidations with 304."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse, Response

from app.articles import views
from app.articles.models import Article
from app.cache import keys
from app.core.config import Settings, app_settings
from app.core.db import SessionDep, utcnow
from app.core.errors import NotFound
from app.core.http_cache import http_date
from app.core.openapi import responses
from app.feeds import builders, service
from app.feeds.builders import ATOM_TYPE, JSON_FEED_TYPE, RSS_TYPE, XML_TYPE, FeedInfo
from app.feeds.schemas import JsonFeed

router = APIRouter(tags=["feeds"])

MAX_AGE = 300
CACHE_CONTROL = f"public, max-age={MAX_AGE}"
NEWS_SITEMAP = "/sitemaps/news.xml"

CategoryParam = Annotated[
    str | None,
    Query(
        max_length=80,
        description="Only articles in this category (slug), its subcategories included.",
    ),
]
TagParam = Annotated[
    str | None, Query(max_length=80, description="Only articles with this tag (slug).")
]


class RssResponse(Response):
    media_type = RSS_TYPE


class AtomResponse(Response):
    media_type = ATOM_TYPE


class JsonFeedResponse(JSONResponse):
    """JSON in its own media type; a JSONResponse, so the docs show the JsonFeed schema."""

    media_type = JSON_FEED_TYPE


class XmlResponse(Response):
    media_type = XML_TYPE


def _documented(media_type: str, description: str, *errors: int) -> dict[int | str, Any]:
    """`responses=` for a route whose 200 is a document in `media_type`."""
    return {
        200: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}},
        **responses(*errors),
    }


# Sitemaps list every public article's address and time of change.
SITEMAP_KEYS = (keys.LISTINGS, keys.ARTICLES)


def _respond(
    body: bytes,
    media_type: str,
    last_modified: datetime | None,
    shown: Iterable[str],
    *,
    by_the_clock: bool = False,
) -> Response:
    headers = {"Cache-Control": CACHE_CONTROL}
    if by_the_clock:
        # What it lists also changes with no write to purge it by: no longer in a CDN either.
        headers["Surrogate-Control"] = headers["CDN-Cache-Control"] = f"max-age={MAX_AGE}"
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    return keys.label(Response(body, media_type=media_type, headers=headers), shown)


# --- feeds -----------------------------------------------------------------------------

Builder = Callable[[Settings, FeedInfo, list[Article]], bytes]


async def _feed(
    request: Request,
    session: AsyncSession,
    category: str | None,
    tag: str | None,
    build: Builder,
    media_type: str,
) -> Response:
    settings = app_settings(request)
    where = await service.feed_filter(session, category, tag)
    articles = await service.latest(session, where, limit=settings.feed_items, now=utcnow())
    # The self link names the filters as validated, not whatever else the query carried.
    query = urlencode([(k, v) for k, v in (("category", category), ("tag", tag)) if v])
    updated = builders.feed_updated(articles)
    info = FeedInfo(
        title=" — ".join(
            [settings.site_name, *(x.name for x in (where.category, where.tag) if x is not None)]
        ),
        self_url=settings.site_url + request.url.path + (f"?{query}" if query else ""),
        updated=updated or builders.EMPTY_FEED_UPDATED,
    )
    shown = [keys.LISTINGS]
    shown += [keys.category(where.category.id)] if where.category is not None else []
    shown += [keys.tag(where.tag.id)] if where.tag is not None else []
    for article in articles:
        shown += views.shown_keys(article, count=False)
        shown += [keys.category(c.id) for c in article.categories]
    return _respond(build(settings, info, articles), media_type, updated, shown)


@router.get(
    "/feeds/rss",
    response_class=RssResponse,
    responses=_documented(RSS_TYPE, "An RSS 2.0 document.", 404, 422),
    summary="Latest articles as RSS 2.0",
)
async def rss_feed(
    request: Request, session: SessionDep, category: CategoryParam = None, tag: TagParam = None
) -> Response:
    """The newest public articles (FEED_ITEMS of them, newest first) as RSS 2.0: each with
    its link, a stable `guid`, `pubDate`, the excerpt as `description`, the body as
    `content:encoded`, the author's name as `dc:creator`, and its categories and tags.
    An unknown `category` or `tag` is a 404."""
    return await _feed(request, session, category, tag, builders.rss, f"{RSS_TYPE}; charset=utf-8")


@router.get(
    "/feeds/atom",
    response_class=AtomResponse,
    responses=_documented(ATOM_TYPE, "An Atom 1.0 document.", 404, 422),
    summary="Latest articles as Atom 1.0",
)
async def atom_feed(
    request: Request, session: SessionDep, category: CategoryParam = None, tag: TagParam = None
) -> Response:
    """The same articles as `/feeds/rss`, as Atom 1.0: the excerpt as `summary`, the body as
    `content type="html"`, RFC 3339 dates."""
    return await _feed(
        request, session, category, tag, builders.atom, f"{ATOM_TYPE}; charset=utf-8"
    )


@router.get(
    "/feeds/json",
    response_class=JsonFeedResponse,
    response_model=JsonFeed,
    responses={200: {"description": "A JSON Feed 1.1 document."}, **responses(404, 422)},
    summary="Latest articles as JSON Feed 1.1",
)
async def json_feed(
    request: Request, session: SessionDep, category: CategoryParam = None, tag: TagParam = None
) -> Response:
    """The same articles as `/feeds/rss`, as JSON Feed 1.1 (`application/feed+json`)."""
    return await _feed(request, session, category, tag, builders.json_feed, JSON_FEED_TYPE)


# --- sitemaps --------------------------------------------------------------------------

XML_UTF8 = f"{XML_TYPE}; charset=utf-8"


@router.get(
    "/sitemap.xml",
    response_class=XmlResponse,
    responses=_documented(XML_TYPE, "A sitemap index (sitemaps.org 0.9)."),
    summary="Sitemap index",
)
async def sitemap_index(request: Request, session: SessionDep) -> Response:
    """Lists the article sitemaps (`/sitemaps/articles-1.xml`, `-2`, …, up to 10,000 URLs
    each) and the Google News sitemap. Built from a count, whatever the number of articles."""
    settings = app_settings(request)
    summary = await service.sitemap_summary(session, utcnow())
    pages = service.page_count(summary.articles, service.SITEMAP_PAGE_SIZE)
    locations = [f"{settings.site_url}/sitemaps/articles-{n}.xml" for n in range(1, pages + 1)]
    locations.append(settings.site_url + NEWS_SITEMAP)
    return _respond(builders.sitemap_index(locations), XML_UTF8, summary.last_change, SITEMAP_KEYS)


@router.get(
    "/sitemaps/articles-{page}.xml",
    response_class=XmlResponse,
    responses=_documented(XML_TYPE, "A sitemap (sitemaps.org 0.9).", 404, 422),
    summary="Articles sitemap, one page",
)
async def sitemap_page(
    request: Request,
    session: SessionDep,
    page: Annotated[int, Path(ge=1, le=1_000_000, description="Page number, from 1.")],
) -> Response:
    """Public articles in id order, 10,000 a page: each article's address and when it last
    changed. A page past the last is a 404."""
    items = await service.sitemap_page(session, page, size=service.SITEMAP_PAGE_SIZE, now=utcnow())
    if not items:
        raise NotFound(f"No sitemap page {page}.")
    newest = max(item.last_change for item in items)
    return _respond(builders.urlset(app_settings(request), items), XML_UTF8, newest, SITEMAP_KEYS)


@router.get(
    NEWS_SITEMAP,
    response_class=XmlResponse,
    responses=_documented(XML_TYPE, "A Google News sitemap."),
    summary="Google News sitemap",
)
async def news_sitemap(request: Request, session: SessionDep) -> Response:
    """Public articles published in the last two days (at most 1,000), newest first, with
    the publication's name and language, the publication date and the title."""
    items = await service.news(session, utcnow())
    newest = max((item.last_change for item in items), default=None)
    return _respond(
        builders.news_urlset(app_settings(request), items),
        XML_UTF8,
        newest,
        SITEMAP_KEYS,
        by_the_clock=True,
    )
