"""Articles as the API shows them: list items, public detail, and the token holder's view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.articles import reads, service
from app.articles.schemas import (
    ArticleAdmin,
    ArticleDetail,
    ArticleLink,
    ArticleListItem,
    AuthorRef,
    CategoryRef,
    CorrectionOut,
    TagRef,
)
from app.cache import keys
from app.core.config import Settings
from app.core.html import reading_minutes
from app.core.urls import article_url
from app.media import views as media


def _list_fields(article: service.Shown, settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "id": article.id,
        "number": article.number,
        "slug": article.slug,
        "url": article_url(
            settings, article_id=article.id, slug=article.slug, number=article.number
        ),
        "title": article.title,
        "kicker": article.kicker,
        "excerpt": article.excerpt,
        "status": service.public_status(article, now),
        "published_at": article.published_at,
        "updated_at": article.updated_at,
        "author": AuthorRef.model_validate(article.author),
        "byline": article.byline,
        "category": CategoryRef.model_validate(article.category) if article.category else None,
        "tags": [TagRef.model_validate(t) for t in article.tags],
        "source_name": article.source_name,
        "source_url": article.source_url,
        "featured_image_url": article.featured_image_url,
        "featured_image_caption": article.featured_image_caption,
        "featured_media_id": article.featured_media_id,
        "featured_media": (
            media.ref(article.featured_media, settings) if article.featured_media else None
        ),
        "word_count": article.word_count,
        "reading_minutes": reading_minutes(article.word_count),
        "comment_count": article.comment_count,
        "comment_status": article.comment_status,
        "comments_close_at": service.comments_close_at(article, settings),
        "comments_open": service.comments_open(article, settings, now),
    }


def list_item(article: service.Shown, settings: Settings, now: datetime) -> ArticleListItem:
    return ArticleListItem.model_construct(**_list_fields(article, settings, now))


def detail(
    article: service.Shown,
    around: reads.Surroundings,
    settings: Settings,
    now: datetime,
    *,
    admin: bool,
) -> ArticleDetail:
    fields = _list_fields(article, settings, now) | {
        "body": article.body,
        "body_media": [media.ref(m, settings) for m in article.body_media],
        "categories": [CategoryRef.model_validate(c) for c in article.categories],
        "breadcrumbs": [CategoryRef.model_validate(c) for c in around.breadcrumbs],
        "corrections": [CorrectionOut.model_validate(c) for c in article.corrections],
        "previous": ArticleLink.model_validate(around.previous) if around.previous else None,
        "next": ArticleLink.model_validate(around.next) if around.next else None,
    }
    if not admin:
        return ArticleDetail.model_construct(**fields)
    return ArticleAdmin.model_construct(
        **fields,
        author_id=article.author_id,
        category_id=article.category_id,
        created_at=article.created_at,
        version=article.version,
    )


def shown_keys(article: service.Shown, *, count: bool = True) -> list[str]:
    """The cache keys of what a list item (or, without its comment `count`, a feed entry)
    shows of an article."""
    found = [keys.article(article.id), keys.author(article.author_id)]
    if article.featured_media_id is not None:
        found.append(keys.media(article.featured_media_id))
    if count:
        found.append(keys.comments(article.id))
    if article.category_id is not None:
        found.append(keys.category(article.category_id))
    found += [keys.tag(t.id) for t in article.tags]
    return found


def detail_keys(article: service.Shown, around: reads.Surroundings) -> list[str]:
    """The cache keys of an article's page: the article, where it is filed, its neighbours."""
    found = shown_keys(article)
    found += [keys.category(c.id) for c in (*article.categories, *around.breadcrumbs)]
    found += [keys.article(n.id) for n in (around.previous, around.next) if n is not None]
    found += [keys.media(m.id) for m in article.body_media]
    return found
