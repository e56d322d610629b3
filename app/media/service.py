"""The media library's rules: uploading, describing, finding and deleting images.

Files go to storage before the row is written, and the row is what makes them exist: an
upload refused or failed before its commit leaves its files to `discard`, and a deleted
item's files are removed once its row is gone. Queries about media belong here; how an
article shows its media is `app.media.views`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

import anyio
from fastapi import Request
from sqlalchemy import ColumnElement, Select, delete, exists, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.articles.queries import LIVE_STATUS, is_public
from app.cache import keys
from app.cache.publish import invalidate
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)
from app.core.problems import title_of
from app.core.security import Principal
from app.core.text import contains, slugify
from app.media import images
from app.media.models import Media, article_media
from app.media.schemas import MediaUpdate
from app.media.storage import Storage, create_storage, new_folder
from app.webhooks import service as webhooks

log = logging.getLogger(__name__)


class UnsupportedImage(DomainError):
    status = 415
    type = "unsupported-image"
    title = title_of(type, status)


class UndecodableImage(DomainError):
    status = 422
    type = "undecodable-image"
    title = title_of(type, status)


class TooManyPixels(DomainError):
    status = 422
    type = "image-too-large"
    title = title_of(type, status)


_REFUSALS: dict[str, type[DomainError]] = {
    "unsupported": UnsupportedImage,
    "undecodable": UndecodableImage,
    "too-many-pixels": TooManyPixels,
}


class Library:
    """The app's storage and its bound on concurrent image work (MEDIA_CONCURRENCY)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage or create_storage(settings)
        self.slots = anyio.CapacityLimiter(settings.media_concurrency)
        self.options = images.Options(
            max_pixels=settings.media_max_pixels, quality=settings.media_jpeg_quality
        )

    async def process(self, data: bytes, focal: tuple[float, float]) -> images.Processed:
        try:
            return await anyio.to_thread.run_sync(
                images.process, data, focal, self.options, limiter=self.slots
            )
        except images.ImageRefused as refused:
            raise _REFUSALS[refused.reason](refused.detail, field="file") from None

    async def recrop(self, data: bytes, focal: tuple[float, float]) -> list[images.Rendition]:
        return await anyio.to_thread.run_sync(
            images.recrop, data, focal, self.options, limiter=self.slots
        )

    async def store(
        self, folder: str, stem: str, files: Sequence[images.Rendition]
    ) -> dict[str, Any]:
        """Put every file, all or none: a failure removes those already stored."""
        sizes: dict[str, dict[str, Any]] = {
            f.name: {
                "key": f"{folder}/{stem}.{f.kind.ext}"
                if f.name == "full"
                else f"{folder}/{stem}-{f.name}.{f.kind.ext}",
                "width": f.width,
                "height": f.height,
                "mime_type": f.kind.mime,
                "bytes": len(f.data),
            }
            for f in files
        }
        try:
            # A task group: when one put fails the others are cancelled and awaited, so
            # none lands after the clean-up below.
            async with asyncio.TaskGroup() as puts:
                for f in files:
                    puts.create_task(self.storage.put(sizes[f.name]["key"], f.data, f.kind.mime))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self.discard([s["key"] for s in sizes.values()])
            if isinstance(exc, Exception):
                log.warning("media storage refused a put: %r", exc)
                raise ServiceUnavailable(
                    "The media storage did not take the files; nothing was stored. "
                    "Try again shortly."
                ) from exc
            raise
        return sizes

    async def discard(self, stored: Sequence[str]) -> None:
        await self.storage.delete(list(stored))


def library(request: Request) -> Library:
    found: Library = request.app.state.media
    return found


def file_keys(media: Media, names: Sequence[str] | None = None) -> list[str]:
    return [size["key"] for name, size in media.sizes.items() if names is None or name in names]


def _stem(filename: str | None) -> str:
    return slugify(PurePath(filename or "").stem, max_length=60) if filename else "image"


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None
    title: str | None = None
    alt_text: str | None = None
    caption: str | None = None
    description: str | None = None
    credit: str | None = None
    copyright: str | None = None
    source_url: str | None = None
    focal_x: float = 0.5
    focal_y: float = 0.5
    import_key: str | None = None


async def create(
    session: AsyncSession, lib: Library, upload: Upload, *, uploader_id: int | None
) -> Media:
    """Check, resize and store an upload, and add its row (flushed, not committed: the
    caller commits, or calls `discard` with `file_keys` if it cannot)."""
    focal = (upload.focal_x, upload.focal_y)
    processed = await lib.process(upload.data, focal)
    now = utcnow()
    found = processed.embedded
    sizes = await lib.store(
        new_folder(now.year, now.month), _stem(upload.filename), processed.files
    )
    media = Media(
        uploader_id=uploader_id,
        folder=sizes["full"]["key"].rsplit("/", 1)[0],
        filename=(upload.filename or "")[:255],
        mime_type=processed.kind.mime,
        width=processed.width,
        height=processed.height,
        file_size=len(processed.files[0].data),
        title=upload.title or found.title or PurePath(upload.filename or "").stem[:300] or "image",
        alt_text=upload.alt_text or "",
        caption=upload.caption if upload.caption is not None else (found.caption or ""),
        description=upload.description or "",
        credit=upload.credit if upload.credit is not None else (found.credit or ""),
        copyright=upload.copyright if upload.copyright is not None else (found.copyright or ""),
        source_url=upload.source_url,
        focal_x=upload.focal_x,
        focal_y=upload.focal_y,
        taken_at=found.taken_at,
        sizes=sizes,
        import_key=upload.import_key,
        created_at=now,
        updated_at=now,
    )
    session.add(media)
    try:
        await session.flush()
        await webhooks.enqueue(session, "media.created", event_data(media, lib), now=now)
    except BaseException:
        await lib.discard(file_keys(media))
        raise
    return media


def event_data(media: Media, lib: Library) -> dict[str, Any]:
    return {
        "id": media.id,
        "title": media.title,
        "mime_type": media.mime_type,
        "width": media.width,
        "height": media.height,
        "url": lib.storage.url(media.sizes["full"]["key"]),
    }


async def get(session: AsyncSession, media_id: int) -> Media:
    media = await session.get(Media, media_id)
    if media is None:
        raise NotFound(f"No media item {media_id}.")
    return media


def in_public_use(now: datetime) -> ColumnElement[bool]:
    """Shown by an article that is public at `now`: the media anyone may read. A scheduled
    article's images stay private until it is published, as its text does."""
    featured = exists().where(Article.featured_media_id == Media.id, is_public(now))
    in_body = exists().where(
        article_media.c.media_id == Media.id,
        article_media.c.article_id == Article.id,
        is_public(now),
    )
    return or_(featured, in_body)


async def readable(session: AsyncSession, media_id: int, principal: Principal | None) -> Media:
    """The newsroom reads its whole library; anyone else only what public articles show."""
    media = await get(session, media_id)
    if principal is None or not principal.can("articles:read"):
        shown = await session.scalar(select(in_public_use(utcnow())).where(Media.id == media_id))
        if not shown:
            raise NotFound(f"No media item {media_id}.")
    return media


def ensure_writable(media: Media, principal: Principal) -> None:
    if media.uploader_id != principal.user.id and not principal.sees_all_articles:
        raise Forbidden("Authors may change and delete only what they uploaded.")


@dataclass(frozen=True, slots=True)
class MediaQuery:
    uploader: int | None = None
    mime_type: str | None = None
    q: str | None = None
    after: datetime | None = None
    before: datetime | None = None


def _listing(query: MediaQuery, public_only: bool) -> Select[Media]:
    statement = select(Media)
    if public_only:
        statement = statement.where(in_public_use(utcnow()))
    if query.uploader is not None:
        statement = statement.where(Media.uploader_id == query.uploader)
    if query.mime_type:
        statement = statement.where(Media.mime_type == query.mime_type)
    if query.q:
        pattern = contains(query.q)
        statement = statement.where(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (Media.title, Media.caption, Media.credit, Media.alt_text)
                )
            )
        )
    if query.after is not None:
        statement = statement.where(Media.created_at > query.after)
    if query.before is not None:
        statement = statement.where(Media.created_at < query.before)
    return statement


async def list_page(
    session: AsyncSession, query: MediaQuery, *, public_only: bool, offset: int, limit: int
) -> tuple[list[Media], int]:
    """Newest first."""
    statement = _listing(query, public_only)
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = await session.scalars(
        statement.order_by(Media.created_at.desc(), Media.id.desc()).offset(offset).limit(limit)
    )
    return list(rows), total


async def public_users(session: AsyncSession, media_id: int) -> list[int]:
    """Public or announced articles that show this item (as featured image or in the body)."""
    featured = select(Article.id).where(Article.featured_media_id == media_id, LIVE_STATUS)
    in_body = (
        select(Article.id)
        .join(article_media, article_media.c.article_id == Article.id)
        .where(article_media.c.media_id == media_id, LIVE_STATUS)
    )
    rows = await session.scalars(featured.union(in_body))
    return sorted(rows)


async def update(session: AsyncSession, lib: Library, media: Media, data: MediaUpdate) -> list[str]:
    """Apply a change; returns the keys of files it replaced, for the caller to remove once
    the change has committed."""
    changes = data.model_dump(exclude_unset=True)
    for name in ("title", "alt_text", "caption", "description", "credit", "copyright"):
        if name in changes and changes[name] is None:
            changes[name] = "" if name != "title" else media.title
    # A null focal coordinate leaves it where it is, as a null title does.
    for name in ("focal_x", "focal_y"):
        if name in changes and changes[name] is None:
            del changes[name]
    if "alt_text" in changes and not changes["alt_text"]:
        users = await public_users(session, media.id)
        if users:
            raise InvalidInput(
                f"Published articles show this image ({_ids(users)}): it needs its alt text.",
                field="alt_text",
            )
    replaced: list[str] = []
    focal = (changes.get("focal_x", media.focal_x), changes.get("focal_y", media.focal_y))
    # Crops are named by the focal point to a thousandth: a smaller move would make files
    # under the same keys, which the removal of the old ones would then take away.
    if images.focal_tag(focal) != images.focal_tag((media.focal_x, media.focal_y)):
        replaced = await _recrop(lib, media, focal)
    for name, value in changes.items():
        setattr(media, name, value)
    media.updated_at = utcnow()
    await session.flush()
    invalidate(session, keys.media(media.id))
    await webhooks.enqueue(session, "media.updated", event_data(media, lib))
    return replaced


async def _recrop(lib: Library, media: Media, focal: tuple[float, float]) -> list[str]:
    """New crops for a moved focal point; returns the old crops' keys."""
    full = await lib.storage.read(media.sizes["full"]["key"])
    if full is None:
        raise Conflict("The stored image is missing; upload it again to change its crops.")
    crops = await lib.recrop(full, focal)
    stem = PurePath(media.sizes["full"]["key"]).stem
    made = await lib.store(media.folder, stem, crops)
    old = {name: size for name, size in media.sizes.items() if name.startswith("crop-")}
    # A new dict: the JSON column notices reassignment, not changes inside it.
    media.sizes = {n: s for n, s in media.sizes.items() if n not in old} | made
    return [size["key"] for size in old.values()]


def _ids(ids: Sequence[int]) -> str:
    return "article " + ", ".join(str(i) for i in ids) if len(ids) < 6 else f"{len(ids)} articles"


async def remove(
    session: AsyncSession, lib: Library, media: Media, principal: Principal, *, force: bool
) -> list[str]:
    """Delete the row; returns its files' keys for the caller to remove after the commit.
    Refused while public articles show it, unless an editor forces it (those articles then
    lose it as their featured image)."""
    users = await public_users(session, media.id)
    if users and not force:
        raise Conflict(
            f"Published articles show this image ({_ids(users)}). Replace it there first, "
            "or (editors) delete it with force=true."
        )
    if users and not principal.sees_all_articles:
        raise Forbidden("Only editors may delete an image that published articles show.")
    featuring = list(
        await session.scalars(select(Article.id).where(Article.featured_media_id == media.id))
    )
    if featuring:
        # Not through each article's version: their text is unchanged, and an editor's
        # If-Match on one of them should still hold.
        await session.execute(
            sql_update(Article)
            .where(Article.featured_media_id == media.id)
            .values(featured_media_id=None)
            .execution_options(synchronize_session=False)
        )
    await session.execute(delete(article_media).where(article_media.c.media_id == media.id))
    stored = file_keys(media)
    data = event_data(media, lib)
    await session.delete(media)
    await session.flush()
    # Sitemaps list featured images by article (key `articles`).
    taken_off = [keys.ARTICLES, *(keys.article(a) for a in featuring)] if featuring else []
    invalidate(session, keys.media(media.id), *taken_off)
    await webhooks.enqueue(session, "media.deleted", data)
    return stored
