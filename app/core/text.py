"""Slugs shared by every domain that names things in URLs, and names compared for look-alikes."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Awaitable, Callable

from slugify import slugify as _slugify
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import Conflict

MAX_SLUG = 80


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """ASCII slug with Unicode transliteration ("Ölçüm" → "olcum")."""
    return _slugify(text, max_length=max_length, word_boundary=True) or "item"


async def unique_slug(
    base: str, taken: Callable[[str], Awaitable[bool]], max_length: int = MAX_SLUG
) -> str:
    """`base`, or `base-2`, `base-3`... whichever is free first."""
    candidate = base[:max_length]
    n = 2
    while await taken(candidate):
        suffix = f"-{n}"
        candidate = base[: max_length - len(suffix)].rstrip("-") + suffix
        n += 1
    return candidate


async def free_slug(
    session: AsyncSession,
    id_column: InstrumentedAttribute[int],
    slug_column: InstrumentedAttribute[str],
    *,
    own_id: int | None,
    name: str,
    wanted: str | None,
    noun: str,
) -> str:
    """The slug asked for, refused (409) if another row has it; absent, a free one made from
    `name`."""

    async def taken(slug: str) -> bool:
        query = select(id_column).where(slug_column == slug)
        if own_id is not None:
            query = query.where(id_column != own_id)
        return await session.scalar(query) is not None

    if wanted is None:
        return await unique_slug(slugify(name), taken)
    if await taken(wanted):
        raise Conflict(f"Another {noun} already has this slug.", field="slug")
    return wanted


_SEPARATORS = str.maketrans("_.-", "   ")


# Remembered: every comment post compares its author's name with each staff member's.
@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """A person's name as compared for look-alikes: Unicode compatibility forms folded
    (fullwidth letters, ligatures), case folded, accents and invisible characters dropped,
    `_ . -` and runs of spaces read as one space ("Ｊａｎｅ_DOE" and "jáne doe" → "jane doe")."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
    kept = "".join(c for c in folded if unicodedata.category(c) not in ("Mn", "Cf"))
    return " ".join(kept.translate(_SEPARATORS).split())


def contains(text: str) -> str:
    """A LIKE pattern for "contains `text`", with `\\` as the escape (`escape="\\"`)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
