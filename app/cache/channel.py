"""Hearing other machines' invalidations: a PostgreSQL LISTEN per worker process.

Each notification names the machine it came from and the keys a committed write changed
(`publish`); the keys are invalidated in this machine's clock, unless they came from this
machine, where the writer already did that before answering. The connection is checked
every `PING_SECONDS`: while it is down (or before it is first up), `up` is False and the
response cache is bypassed, and once it is back the whole of this machine's cache is
invalidated, since anything may have changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url

from app.cache import keys
from app.cache.clock import KeyClock
from app.cache.publish import CHANNEL

log = logging.getLogger("app.cache")

PING_SECONDS = 1.0
RETRY_SECONDS = 1.0


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    def __init__(self, database_url: str, clock: KeyClock, *, connect_timeout: float) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.up = False
        self.heard = 0  # notifications from other machines (for tests and metrics)
        self._first = asyncio.Event()
        self._lost = asyncio.Event()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, body = payload.partition("|")
        if origin == self.clock.origin:
            return
        self.heard += 1
        names = set(keys.parse(body))
        if keys.ALL in names:
            self.clock.invalidate_all()
        else:
            self.clock.invalidate(names)

    def _on_close(self, _connection: Any) -> None:
        self.up = False
        self._lost.set()

    async def wait_first(self) -> bool:
        """Wait until the channel is up for the first time (at start-up); with a deadline
        around it, start-up does not depend on the database answering."""
        await self._first.wait()
        return self.up

    async def run(self) -> None:
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(
                    self.dsn,
                    timeout=self.connect_timeout,
                    server_settings={"application_name": "newsroom-cache-listener"},
                )
                self._lost.clear()
                connection.add_termination_listener(self._on_close)
                await connection.add_listener(CHANNEL, self._on_notify)
                # Whatever was invalidated while nobody listened is unknown: start afresh.
                self.clock.invalidate_all()
                self.up = True
                self._first.set()
                log.info("cache invalidation channel up")
                while not self._lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PING_SECONDS):
                            await self._lost.wait()
                    if not self._lost.is_set():
                        async with asyncio.timeout(PING_SECONDS):
                            await connection.execute("SELECT 1")
            except asyncio.CancelledError:
                self.up = False
                if connection is not None:
                    connection.terminate()
                raise
            except Exception as exc:  # the database is away: keep trying
                log.warning("cache invalidation channel down: %s", type(exc).__name__)
            self.up = False
            if connection is not None:
                connection.terminate()
            await asyncio.sleep(RETRY_SECONDS)
