"""What the clock alone changes, with no write to mark the moment: a scheduled article
becomes public (its neighbours' pages, lists, feeds and sitemaps change; see
`invalidation.came_due`), and an article's comments close (its page and lists say
`comments_open`). This watcher, one per worker process, invalidates those pages then. It
sleeps until the next such instant, waking early when a write touched a scheduled article
anywhere (the `schedule` key moves in this machine's clock), and looks again at least every
`recheck` seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.articles import invalidation, queries
from app.cache import keys
from app.cache.clock import KeyClock, slot_of
from app.core.db import utcnow

log = logging.getLogger("app.cache")

POLL_SECONDS = 1.0


async def _next_instant(
    session: AsyncSession, after: datetime, close_after_days: int
) -> datetime | None:
    found = [
        t
        for t in (
            await queries.next_scheduled(session, after),
            await queries.next_closing(session, after, close_after_days),
        )
        if t is not None
    ]
    return min(found) if found else None


async def watch(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: KeyClock,
    *,
    close_after_days: int = 0,
    recheck: float = 30.0,
    poll: float = POLL_SECONDS,
) -> None:
    schedule = (slot_of(keys.SCHEDULE),)
    done_until = utcnow()
    while True:
        upcoming: datetime | None = None
        try:
            async with sessionmaker() as session:
                upcoming = await _next_instant(session, done_until, close_after_days)
        except Exception as exc:  # the database may be away; try again later
            log.warning("could not read the next scheduled article: %s", type(exc).__name__)
        wait = recheck
        if upcoming is not None:
            wait = min(recheck, max(0.0, (upcoming - utcnow()).total_seconds()))
        mark = clock.now()
        deadline = time.monotonic() + wait
        # Another process moves the clock: there is no event to wait on across processes.
        while time.monotonic() < deadline and clock.valid(schedule, mark):  # noqa: ASYNC110
            await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        now = utcnow()
        if upcoming is None or now < upcoming:
            continue
        try:
            async with sessionmaker() as session:
                await invalidation.came_due(session, done_until, now)
                await invalidation.comments_closed(session, done_until, now, close_after_days)
                await session.commit()
            done_until = now
        except Exception as exc:
            log.warning("could not invalidate what came due: %s", type(exc).__name__)
