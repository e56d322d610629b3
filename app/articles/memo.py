"""What stays true of article lists until their contents change: totals and deep positions.

Counting a listing's matches is most of a list page's cost on a large site (the public list
counts every public article), and an OFFSET deep into a list walks every row before it. Both
answers stay true while nothing that decides which articles a listing holds has changed and
no article has come due by the clock. Migration 0006's triggers move `listing_generation` in
the same transaction as any such change, so the new counter and the new rows become visible
together: an answer remembered under generation G, before the next publication time, is
exact for every request that reads G, from any worker or machine. There is no TTL to tune
and nothing to invalidate by hand.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, column, func, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

from app.articles.models import Article
from app.articles.queries import LIVE_STATUS
from app.core.db import UTCDateTime

T = TypeVar("T")

_generation = table("listing_generation", column("id"), column("value"))
_a = Article.__table__.c
_NOW = bindparam("now", type_=UTCDateTime())
_STATE = select(
    _generation.c.value,
    select(func.min(_a.published_at))
    .where(LIVE_STATUS, _a.published_at > _NOW)
    .scalar_subquery()
    .label("next_due"),
).where(_generation.c.id == 1)


@dataclass(frozen=True, slots=True)
class ListingState:
    generation: int
    # When the next article becomes public by the clock alone (None: none is waiting).
    next_due: datetime | None


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: int
    next_due: datetime | None
    value: Any


class ListingMemo:
    """Answers remembered per (key, generation); one per process, bounded LRU."""

    def __init__(self, max_entries: int = 5000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    @staticmethod
    async def state(db: AsyncConnection, now: datetime) -> ListingState:
        row = (await db.execute(_STATE, {"now": now})).one()
        return ListingState(int(row.value), row.next_due)

    async def get(
        self,
        state: ListingState,
        key: Hashable,
        now: datetime,
        compute: Callable[[], Awaitable[T]],
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """The remembered answer, or `compute`'s, remembered unless `keep` says otherwise."""
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry.generation == state.generation
            and (entry.next_due is None or now < entry.next_due)
        ):
            self._entries.move_to_end(key)
            value: T = entry.value
            return value
        value = await compute()
        if keep is not None and not keep(value):
            return value
        self._entries[key] = _Entry(state.generation, state.next_due, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value
