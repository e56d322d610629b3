"""Tags: free-form labels on articles, created by editors or on first use in an article."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, inspect, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, article_tags
from app.articles.queries import is_public
from app.cache import keys
from app.cache.publish import invalidate
from app.core import text
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.text import contains, slugify
from app.tags.models import Tag
from app.tags.schemas import MAX_NAME, TagCreate, TagUpdate


async def get(session: AsyncSession, tag_id: int) -> Tag:
    tag = await session.get(Tag, tag_id)
    if tag is None:
        raise NotFound(f"No tag with id {tag_id}.")
    return tag


async def by_slug(session: AsyncSession, slug: str) -> Tag:
    tag = await session.scalar(select(Tag).where(Tag.slug == slug))
    if tag is None:
        raise NotFound(f"No tag with slug {slug!r}.")
    return tag


async def list_page(
    session: AsyncSession, *, q: str | None, offset: int, limit: int
) -> tuple[list[Tag], int]:
    query = select(Tag)
    if q:
        query = query.where(Tag.name.ilike(contains(q), escape="\\"))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(Tag.name, Tag.id).offset(offset).limit(limit))
    return list(rows), total


async def article_counts(session: AsyncSession, ids: Collection[int]) -> dict[int, int]:
    """Publicly visible articles carrying each tag (absent: none)."""
    tag_id = article_tags.c.tag_id
    rows = await session.execute(
        select(tag_id, func.count())
        .select_from(article_tags)
        .join(Article, Article.id == article_tags.c.article_id)
        .where(is_public(utcnow()), tag_id.in_(ids))
        .group_by(tag_id)
    )
    return {tid: count for tid, count in rows}


async def _slug(session: AsyncSession, own_id: int | None, name: str, wanted: str | None) -> str:
    return await text.free_slug(
        session, Tag.id, Tag.slug, own_id=own_id, name=name, wanted=wanted, noun="tag"
    )


async def _apply(session: AsyncSession, tag: Tag, changes: dict[str, Any]) -> None:
    if "name" in changes:
        if changes["name"] is None:
            raise InvalidInput("name cannot be null.", field="name")
        tag.name = changes["name"]
    if "slug" in changes:
        own_id = tag.id if inspect(tag).has_identity else None
        tag.slug = await _slug(session, own_id, tag.name, changes["slug"])
    try:
        await session.flush()
    except IntegrityError as exc:
        # The slug check reads before writing; a concurrent writer can still win the race.
        raise Conflict("Another tag took this slug meanwhile; retry.", field="slug") from exc
    # Names show on articles' pages; slugs decide what `?tag=` lists.
    invalidate(session, keys.tag(tag.id), keys.TAGS, keys.LISTINGS)


async def create(session: AsyncSession, data: TagCreate) -> Tag:
    tag = Tag()
    session.add(tag)
    await _apply(session, tag, data.model_dump())
    return tag


async def replace(session: AsyncSession, tag: Tag, data: TagCreate) -> Tag:
    """Full replacement: an absent slug is generated from the name again."""
    await _apply(session, tag, data.model_dump())
    return tag


async def update(session: AsyncSession, tag: Tag, data: TagUpdate) -> Tag:
    await _apply(session, tag, data.model_dump(exclude_unset=True))
    return tag


async def delete(session: AsyncSession, tag: Tag) -> None:
    """Delete `tag`, taking it off every article that has it."""
    tagged = select(article_tags.c.article_id).where(article_tags.c.tag_id == tag.id)
    # The articles' versions move: an editor's copy read before still lists the tag.
    await session.execute(
        sql_update(Article).where(Article.id.in_(tagged)).values(version=Article.version + 1)
    )
    await session.execute(sql_delete(article_tags).where(article_tags.c.tag_id == tag.id))
    invalidate(session, keys.tag(tag.id), keys.TAGS, keys.LISTINGS)
    await session.delete(tag)
    await session.flush()


async def resolve(session: AsyncSession, names_or_slugs: list[str]) -> list[Tag]:
    """The tags an article names, by slug or by name (case-insensitive), each once, in the
    order given; a name no tag has yet becomes a new tag. Each must be 1–100 characters."""
    wanted: dict[str, str] = {}
    for raw in names_or_slugs:
        value = raw.strip()
        if not 1 <= len(value) <= MAX_NAME:
            raise InvalidInput(f"Each tag must be 1–{MAX_NAME} characters long.", field="tags")
        wanted.setdefault(value.casefold(), value)
    if not wanted:
        return []
    values = list(wanted.values())
    # Candidates by slug, by slug of the name, and by lower-cased name; matched exactly below
    # (SQLite's lower() knows only ASCII, so the slug catches "Ölçüm" for "ölçüm").
    known = list(
        await session.scalars(
            select(Tag).where(
                or_(
                    Tag.slug.in_(values + [slugify(v) for v in values]),
                    func.lower(Tag.name).in_([v.lower() for v in values]),
                )
            )
        )
    )
    found: dict[int, Tag] = {}
    for value in values:
        tag = next((t for t in known if t.slug == value), None) or next(
            (t for t in known if t.name.casefold() == value.casefold()), None
        )
        if tag is None:
            tag = Tag(name=value, slug=await _slug(session, None, value, None))
            session.add(tag)
            await session.flush()
            invalidate(session, keys.TAGS)
            known.append(tag)
        found.setdefault(tag.id, tag)
    return list(found.values())
