"""Slugs shared by every domain that names things in URLs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slugify import slugify as _slugify

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
