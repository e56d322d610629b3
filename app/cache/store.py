"""A cache of rendered public responses, served below routing, validation and serialisation.

An anonymous GET of a cached route is looked up by its path and its declared query
parameters in canonical order (`app.core.urls`): an unknown parameter is left out of the
key, as the route ignores it too. Only a 200 that names what it shows (`Surrogate-Key`, see
`app.cache.keys`), is public and does not vary is stored; it stays valid until one of its
keys is invalidated on this machine (`app.cache.clock`) or its TTL lapses (each entry
somewhere in the last fifth of it). Entries are held in the order they were stored, under a
bound in bytes: the oldest go first, and expired ones are swept from the front on every
request and by the app's sweeper, so every entry is gone within the TTL of being stored.
While the instance cannot hear other machines' invalidations (`channel`), the cache
is bypassed.
"""

from __future__ import annotations

import random
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cache import keys
from app.cache.clock import KeyClock, slot_of
from app.core.urls import canonical_query_string, declared_query

_PRIVATE_REQUEST = (b"authorization", b"x-comment-token", b"cookie")
_X_CACHE = b"x-cache"
_SURROGATE_KEY = keys.SURROGATE_KEY.lower().encode()
# Bookkeeping per entry besides its bytes (the objects around them), roughly.
_OVERHEAD = 400
_random = random.Random()  # noqa: S311 - spreads expiry times, nothing secret


class Channel(Protocol):
    """Whether this process hears every invalidation made elsewhere."""

    @property
    def up(self) -> bool: ...


class AlwaysUp:
    """One machine (SQLite): every invalidation lands in the shared clock directly."""

    up = True


@dataclass(slots=True)
class Entry:
    since: int  # the clock before the response was computed
    checked: int  # the clock when the entry was last found valid
    expires: float
    slots: tuple[int, ...]
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    size: int


class RouteTable:
    """The cached GET routes and the query parameters each declares."""

    def __init__(self, routes: Iterable[BaseRoute], prefixes: tuple[str, ...]) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str]]] = [
            (context.path_regex, declared_query(context.original_route))
            for context in iter_route_contexts(list(routes))
            if isinstance(context.original_route, APIRoute)
            and "GET" in (context.methods or ())
            and (context.path or "").startswith(prefixes)
        ]
        self._seen: dict[str, frozenset[str] | None] = {}

    def names(self, path: str) -> frozenset[str] | None:
        """The declared query parameters of the cached route at `path`; None: not cached."""
        try:
            return self._seen[path]
        except KeyError:
            pass
        found = next((names for regex, names in self._routes if regex.match(path)), None)
        if len(self._seen) > 10_000:  # paths carry ids: remember the recent ones only
            self._seen.clear()
        self._seen[path] = found
        return found


class EntryStore:
    """Entries in the order they were stored (= expiry order), bounded in bytes."""

    def __init__(self, clock: KeyClock, *, max_bytes: int, ttl: float) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self.max_body = min(1 << 20, max_bytes // 4)
        self.ttl = ttl
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0

    def sweep(self, now: float) -> None:
        entries = self.entries
        while entries:
            key, oldest = next(iter(entries.items()))
            if oldest.expires > now and self.bytes <= self.max_bytes:
                return
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key)
        self.bytes -= entry.size

    def get(self, key: str, now: float) -> Entry | None:
        self.sweep(now)
        entry = self.entries.get(key)
        if entry is None:
            return None
        clock = self.clock.now()
        if clock != entry.checked:
            if not self.clock.valid(entry.slots, entry.since):
                self._drop(key)
                return None
            entry.checked = clock
        return entry

    def put(self, key: str, entry: Entry) -> None:
        if key in self.entries:
            self._drop(key)
        self.entries[key] = entry
        self.bytes += entry.size
        self.sweep(time.monotonic())

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


def _storable(start: Message) -> bool:
    if start["status"] != 200:
        return False
    labelled = False
    for name, value in start.get("headers", []):
        name = name.lower()
        if name == b"cache-control" and (b"private" in value or b"no-store" in value):
            return False
        if name in (b"vary", b"set-cookie"):
            return False
        if name == _SURROGATE_KEY:
            labelled = True
    return labelled


class ResponseCacheMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: EntryStore,
        routes: RouteTable,
        channel: Channel,
    ) -> None:
        self.app = app
        self.store = store
        self.routes = routes
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        for name, _ in scope["headers"]:
            if name in _PRIVATE_REQUEST:
                await self.app(scope, receive, send)
                return
        names = self.routes.names(scope["path"])
        if names is None or not self.channel.up:
            await self.app(scope, receive, send)
            return
        query: bytes = scope["query_string"]
        key = scope["path"]
        if query:
            key += "?" + canonical_query_string(query, names)
        now = time.monotonic()
        entry = self.store.get(key, now)
        if entry is not None:
            await send(
                {"type": "http.response.start", "status": entry.status, "headers": entry.headers}
            )
            await send({"type": "http.response.body", "body": entry.body})
            return
        await self._fill(scope, receive, send, key, now)

    async def _fill(self, scope: Scope, receive: Receive, send: Send, key: str, now: float) -> None:
        store = self.store
        since = store.clock.now()
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        storable = False

        async def capture(message: Message) -> None:
            nonlocal start, storable, size
            if message["type"] == "http.response.start":
                storable = _storable(message)
                if storable:
                    start = message
                message = {**message, "headers": [*message.get("headers", []), (_X_CACHE, b"MISS")]}
            elif storable:
                body = message.get("body", b"")
                size += len(body)
                chunks.append(body)
                if size > store.max_body:
                    storable = False
                    chunks.clear()
            await send(message)

        await self.app(scope, receive, capture)
        if not storable or start is None or not self.channel.up:
            return
        headers = [(n.lower(), v) for n, v in start.get("headers", [])]
        labels = next(v for n, v in headers if n == _SURROGATE_KEY).decode("latin-1")
        slots = tuple({slot_of(k) for k in keys.parse(labels)})
        # An invalidation of any of these keys since `since` means the answer may predate it.
        if not store.clock.valid(slots, since):
            return
        headers.append((_X_CACHE, b"HIT"))
        body = b"".join(chunks)
        weight = len(key) + len(body) + sum(len(n) + len(v) for n, v in headers)
        store.put(
            key,
            Entry(
                since=since,
                checked=since,
                # Spread over the last fifth of the TTL: entries filled together (a cold
                # start) must not all expire, and be filled again, in the same instant.
                expires=now + store.ttl * _random.uniform(0.8, 1.0),
                slots=slots,
                status=start["status"],
                headers=headers,
                body=body,
                size=weight + 8 * len(slots) + _OVERHEAD,
            ),
        )
