"""A cache of rendered public responses, served below routing, validation and serialisation.

Anonymous GETs of public resources are stored as the bytes and headers the app produced. Any
write that succeeds moves a content *generation* before its response leaves the server, and a
cached entry from an older generation is never served: a reader can not see a draft, an edit
that has already been answered, or a removed comment, from any worker. The generation lives in
a small memory-mapped file shared by the workers of one machine. A scheduled article's time
coming moves it too (`watch_schedule`), and entries lapse after a TTL as a safety net.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import mmap
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.db import utcnow

log = logging.getLogger("app.cache")

_LAYOUT = struct.Struct("<Q")
_STORED_HEADERS = {
    b"content-type",
    b"etag",
    b"last-modified",
    b"cache-control",
    b"link",
    b"x-total-count",
    b"location",
}


class Generation:
    """A counter shared by every worker process on this machine (an mmap'd file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _LAYOUT.size:
            os.ftruncate(self._fd, _LAYOUT.size)
        self._map = mmap.mmap(self._fd, _LAYOUT.size)

    def read(self) -> int:
        return int(_LAYOUT.unpack_from(self._map, 0)[0])

    def bump(self) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            generation = self.read() + 1
            _LAYOUT.pack_into(self._map, 0, generation)
            return generation
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


@dataclass(slots=True)
class Entry:
    generation: int
    stored_at: float
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ResponseCacheMiddleware:
    """Serve a stored response for an anonymous GET when nothing has been written since."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        generation: Generation,
        prefixes: tuple[str, ...],
        private_writes: tuple[str, ...] = (),
        max_entries: int = 5000,
        max_body: int = 1 << 20,
        ttl: float = 30.0,
    ) -> None:
        self.app = app
        self.generation = generation
        self.prefixes = prefixes
        self.private_writes = private_writes
        self.max_entries = max_entries
        self.max_body = max_body
        self.ttl = ttl
        self.entries: OrderedDict[bytes, Entry] = OrderedDict()

    def _cacheable_request(self, scope: Scope) -> bool:
        if scope["method"] != "GET" or not scope["path"].startswith(self.prefixes):
            return False
        for name, _ in scope["headers"]:
            if name in (b"authorization", b"x-comment-token", b"cookie"):
                return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._cacheable_request(scope):
            writes = scope["method"] not in ("GET", "HEAD", "OPTIONS")
            if writes and not scope["path"].startswith(self.private_writes):
                await self.app(scope, receive, self._bumping(send))
            else:
                await self.app(scope, receive, send)
            return
        key = scope["path"].encode() + b"?" + scope["query_string"]
        generation = self.generation.read()
        now = time.monotonic()
        entry = self.entries.get(key)
        if entry is not None:
            if entry.generation == generation and now - entry.stored_at < self.ttl:
                self.entries.move_to_end(key)
                await send(
                    {
                        "type": "http.response.start",
                        "status": entry.status,
                        "headers": entry.headers,
                    }
                )
                await send({"type": "http.response.body", "body": entry.body})
                return
            del self.entries[key]
        await self._fill(scope, receive, send, key, generation, now)

    async def _fill(
        self, scope: Scope, receive: Receive, send: Send, key: bytes, generation: int, now: float
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        storable = True

        async def capture(message: Message) -> None:
            nonlocal start, storable
            if message["type"] == "http.response.start":
                start = message
                cache_control = b""
                for name, value in message.get("headers", []):
                    if name.lower() == b"cache-control":
                        cache_control = value.lower()
                storable = message["status"] == 200 and not (
                    b"private" in cache_control or b"no-store" in cache_control
                )
            elif storable:
                chunks.append(message.get("body", b""))
                if sum(map(len, chunks)) > self.max_body:
                    storable = False
                    chunks.clear()
            await send(message)

        await self.app(scope, receive, capture)
        if storable and start is not None:
            headers = [
                (n.lower(), v) for n, v in start.get("headers", []) if n.lower() in _STORED_HEADERS
            ]
            self.entries[key] = Entry(generation, now, start["status"], headers, b"".join(chunks))
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def _bumping(self, send: Send) -> Send:
        """Move the generation before a successful write's answer leaves the server."""

        async def wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 400:
                self.generation.bump()
            await send(message)

        return wrapper


async def watch_schedule(
    next_scheduled: Callable[[], Awaitable[datetime | None]],
    generation: Generation,
    *,
    recheck: float = 30.0,
) -> None:
    """Move the generation when a scheduled article's time comes: it becomes public with no
    write, so no write would invalidate the lists it now belongs in."""
    while True:
        try:
            upcoming = await next_scheduled()
        except Exception:  # the database may be away; try again later
            log.warning("could not read the next scheduled article", exc_info=False)
            upcoming = None
        wait = recheck
        if upcoming is not None:
            wait = min(recheck, max(0.0, (upcoming - utcnow()).total_seconds()))
        seen = generation.read()
        deadline = time.monotonic() + wait
        # Wake early when another write changed things (a new schedule may be sooner).
        while time.monotonic() < deadline and generation.read() == seen:  # noqa: ASYNC110 - another process moves it
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if upcoming is not None and utcnow() >= upcoming:
            generation.bump()
