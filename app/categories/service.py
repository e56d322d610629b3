"""Categories: the site's sections, a tree linked by `parent_id`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, inspect, literal_column, or_, select
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.articles.models import Article, article_categories
from app.articles.queries import is_public
from app.cache import keys
from app.cache.publish import invalidate
from app.categories.models import Category
from app.categories.schemas import CategoryCreate, CategoryUpdate
from app.core import text
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound

# Deeper than any real section tree; stops the breadcrumb query should bad data ever loop.
MAX_DEPTH = 50

_Children = dict[int | None, list[int]]
_RACE = "A concurrent change conflicts with this one (the slug or parent); read again and retry."


async def get(session: AsyncSession, category_id: int) -> Category:
    category = await session.get(Category, category_id)
    if category is None:
        raise NotFound(f"No category with id {category_id}.")
    return category


async def by_slug(session: AsyncSession, slug: str) -> Category:
    category = await session.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        raise NotFound(f"No category with slug {slug!r}.")
    return category


async def get_many(session: AsyncSession, ids: list[int]) -> list[Category]:
    """The categories with these ids, in the order given, each once; an unknown id is a 422."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    rows = await session.scalars(select(Category).where(Category.id.in_(wanted)))
    found = {category.id: category for category in rows}
    unknown = [str(i) for i in wanted if i not in found]
    if unknown:
        raise InvalidInput(f"No category with id {', '.join(unknown)}.", field="category_ids")
    return [found[i] for i in wanted]


async def list_page(
    session: AsyncSession, *, offset: int, limit: int
) -> tuple[list[Category], int]:
    total = await session.scalar(select(func.count()).select_from(Category)) or 0
    rows = await session.scalars(
        select(Category).order_by(Category.name, Category.id).offset(offset).limit(limit)
    )
    return list(rows), total


async def list_all(session: AsyncSession) -> list[Category]:
    """Every category, ordered by name: the table is small (a site's sections)."""
    return list(await session.scalars(select(Category).order_by(Category.name, Category.id)))


@dataclass(frozen=True, slots=True)
class Counts:
    own: int = 0  # filed in the category itself
    total: int = 0  # in it or any category below it, each article once: what ?category= shows


async def article_counts(
    session: AsyncSession, ids: Collection[int] | None = None
) -> dict[int, Counts]:
    """Publicly visible articles of each category (absent: none), in one query."""
    start = select(
        Category.id.label("root"),
        Category.id.label("member"),
        literal_column("0", Integer).label("depth"),
    )
    if ids is not None:
        start = start.where(Category.id.in_(ids))
    subtree = start.cte("subtree", recursive=True)
    subtree = subtree.union_all(
        select(subtree.c.root, Category.id, subtree.c.depth + 1)
        .join(subtree, Category.parent_id == subtree.c.member)
        .where(subtree.c.depth < MAX_DEPTH)
    )
    filed = article_categories.c.category_id
    query = (
        select(
            subtree.c.root,
            func.count(func.distinct(article_categories.c.article_id)),
            func.count(func.distinct(case((filed == subtree.c.root, Article.id)))),
        )
        .select_from(subtree)
        .join(article_categories, filed == subtree.c.member)
        .join(Article, Article.id == article_categories.c.article_id)
        .where(is_public(utcnow()))
        .group_by(subtree.c.root)
    )
    rows = await session.execute(query)
    return {root: Counts(own=own, total=total) for root, total, own in rows}


async def children(session: AsyncSession, category: Category) -> list[Category]:
    rows = await session.scalars(
        select(Category).where(Category.parent_id == category.id).order_by(Category.name)
    )
    return list(rows)


async def path(session: AsyncSession, category: Category) -> list[Category]:
    """Breadcrumbs: the ancestors of `category`, root first, ending with itself."""
    up = (
        select(Category.id, Category.parent_id, literal_column("0", Integer).label("depth"))
        .where(Category.id == category.id)
        .cte("ancestors", recursive=True)
    )
    up = up.union_all(
        select(Category.id, Category.parent_id, up.c.depth + 1)
        .join(up, Category.id == up.c.parent_id)
        .where(up.c.depth < MAX_DEPTH)
    )
    rows = await session.scalars(
        select(Category).join(up, Category.id == up.c.id).order_by(up.c.depth.desc())
    )
    return list(rows)


async def _tree(session: AsyncSession | AsyncConnection) -> tuple[dict[str, int], _Children]:
    """The whole tree's shape in one query: ids by slug, and child ids by parent id."""
    rows = await session.execute(select(Category.id, Category.slug, Category.parent_id))
    ids_by_slug: dict[str, int] = {}
    children_of: _Children = defaultdict(list)
    for category_id, slug, parent_id in rows:
        ids_by_slug[slug] = category_id
        children_of[parent_id].append(category_id)
    return ids_by_slug, children_of


def _subtree(children_of: _Children, root: int) -> set[int]:
    found = {root}
    stack = [root]
    while stack:
        for child in children_of.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


async def descendant_ids(
    session: AsyncSession | AsyncConnection, slugs: list[str]
) -> dict[str, set[int]]:
    """For each slug, the ids of that category and all below it; an unknown slug maps to an
    empty set. Filters such as "articles in World" use it to include "World > Asia"."""
    ids_by_slug, children_of = await _tree(session)
    return {
        slug: _subtree(children_of, ids_by_slug[slug]) if slug in ids_by_slug else set()
        for slug in slugs
    }


async def _check_parent(session: AsyncSession, own_id: int | None, parent_id: int) -> None:
    if await session.get(Category, parent_id) is None:
        raise InvalidInput(f"No category with id {parent_id}.", field="parent_id")
    if own_id is None:
        return
    _, children_of = await _tree(session)
    if parent_id in _subtree(children_of, own_id):
        raise InvalidInput(
            "A category cannot be placed under itself or one of its subcategories.",
            field="parent_id",
        )


async def _check_siblings(
    session: AsyncSession, own_id: int | None, name: str, parent_id: int | None
) -> None:
    """Two sections of one parent may not read the same (as in WordPress): a menu could not
    tell them apart. Under another parent the name is free (World > Sport, Local > Sport)."""
    query = select(Category.name).where(
        Category.parent_id.is_(None) if parent_id is None else Category.parent_id == parent_id
    )
    if own_id is not None:
        query = query.where(Category.id != own_id)
    wanted = text.name_key(name)
    if any(text.name_key(other) == wanted for other in await session.scalars(query)):
        raise Conflict(
            f"A category named {name!r} already exists here; choose another name.",
            field="name",
        )


async def _apply(session: AsyncSession, category: Category, changes: dict[str, Any]) -> None:
    if "name" in changes and changes["name"] is None:
        raise InvalidInput("name cannot be null.", field="name")
    own_id = category.id if inspect(category).has_identity else None
    if changes.get("parent_id") is not None:
        await _check_parent(session, own_id, changes["parent_id"])
    for key in ("name", "description", "parent_id"):
        if key in changes:
            setattr(category, key, changes[key])
    if "name" in changes or "parent_id" in changes:
        await _check_siblings(session, own_id, category.name, category.parent_id)
    if "slug" in changes:
        category.slug = await text.free_slug(
            session,
            Category.id,
            Category.slug,
            own_id=own_id,
            name=category.name,
            wanted=changes["slug"],
            noun="category",
        )


async def _flush(session: AsyncSession, conflict: str) -> None:
    # The checks above read before writing; a concurrent writer can still win the race.
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def _changed(session: AsyncSession, category: Category) -> None:
    # Names, slugs and the tree show on articles' pages and decide what `?category=` lists.
    invalidate(session, keys.category(category.id), keys.CATEGORIES, keys.LISTINGS)


async def create(session: AsyncSession, data: CategoryCreate) -> Category:
    category = Category()
    await _apply(session, category, data.model_dump())
    session.add(category)
    await _flush(session, _RACE)
    _changed(session, category)
    return category


async def replace(session: AsyncSession, category: Category, data: CategoryCreate) -> Category:
    """Full replacement: an absent field takes its default (the slug: one from the name)."""
    await _apply(session, category, data.model_dump())
    await _flush(session, _RACE)
    _changed(session, category)
    return category


async def update(session: AsyncSession, category: Category, data: CategoryUpdate) -> Category:
    await _apply(session, category, data.model_dump(exclude_unset=True))
    await _flush(session, _RACE)
    _changed(session, category)
    return category


def _filed_in(category_id: int) -> ColumnElement[bool]:
    """Articles in a category: as their primary one or among their others."""
    return or_(
        Article.category_id == category_id,
        Article.id.in_(
            select(article_categories.c.article_id).where(
                article_categories.c.category_id == category_id
            )
        ),
    )


async def _move_articles(session: AsyncSession, source: int, target: int) -> None:
    # Each moved article's version moves too: an editor's copy read before is now stale.
    await session.execute(
        sql_update(Article)
        .where(_filed_in(source))
        .values(
            category_id=case((Article.category_id == source, target), else_=Article.category_id),
            version=Article.version + 1,
        )
    )
    links = article_categories.c
    # An article already filed in the target keeps its one row there.
    await session.execute(
        sql_delete(article_categories).where(
            links.category_id == source,
            links.article_id.in_(select(links.article_id).where(links.category_id == target)),
        )
    )
    await session.execute(
        sql_update(article_categories).where(links.category_id == source).values(category_id=target)
    )


async def delete(session: AsyncSession, category: Category, *, move_to: int | None = None) -> None:
    """Delete `category`. Its articles block this unless `move_to` names a category to move
    them to. Its subcategories move up to its parent, as WordPress does."""
    count = await session.scalar(
        select(func.count()).select_from(Article).where(_filed_in(category.id))
    )
    if move_to is not None:
        if move_to == category.id or await session.get(Category, move_to) is None:
            raise InvalidInput(
                "move_to must name another existing category.", field="move_to", location="query"
            )
        if count:
            await _move_articles(session, category.id, move_to)
    elif count:
        raise Conflict(
            f"{count} article(s) are filed in this category. Move them first, or pass "
            "move_to=<category id> to move them while deleting."
        )
    _changed(session, category)
    if move_to is not None:
        invalidate(session, keys.category(move_to))
    for child in await children(session, category):
        child.parent_id = category.parent_id
        _changed(session, child)
    await session.flush()
    await session.delete(category)
    await _flush(session, "Articles were filed in this category meanwhile; try again.")
