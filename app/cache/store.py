"""A cache of rendered public responses, served below routing, validation and serialisation.

An anonymous GET of a cached route is looked up by its path and its declared query
parameters in canonical order (`app.core.urls`): an unknown parameter is left out of the
key, as the route ignores it too. Only a 200 that names what it shows (`Surrogate-Key`, see
`app.cache.keys`), is public and does not vary is stored; it stays valid until one of its
keys is invalidated on this machine (`app.cache.clock`) or its TTL lapses (each entry
somewhere in the last fifth of it).

A key may stand for one number in the answer and nothing else (an article's page shows its
comments only as `comment_count`): a `Refresher` names such keys. An entry invalidated by
that key alone is brought up to date by reading the number again and writing it into the
stored bytes (and the ETag), instead of rendering the page again: with readers commenting,
that is most invalidations, and one indexed read instead of routing, two statements and a
render.

Entries are held in the order they were stored, under a bound in bytes: the oldest go
first, and expired ones are swept from the front on every request and by the app's
sweeper, so every entry is gone within the TTL of being stored.
While the instance cannot hear other machines' invalidations (`channel`), the cache
is bypassed.
"""

from __future__ import annotations

import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cache import keys
from app.cache.clock import KeyClock, slot_of
from app.core.http_cache import etag_for, retagged
from app.core.urls import canonical_query_string, declared_query

_PRIVATE_REQUEST = (b"authorization", b"x-comment-token", b"cookie")
_X_CACHE = b"x-cache"
_REFRESHED = (_X_CACHE, b"REFRESHED")
_ETAG = b"etag"
_LENGTH = b"content-length"
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


@dataclass(frozen=True, slots=True)
class Refresher:
    """Keys `{prefix}{id}` that the answers at `paths` show only as the number after
    `field` in their body (once): `value(id)` reads that number again, None if it cannot
    (then the answer is rendered again)."""

    prefix: str
    field: bytes
    value: Callable[[int], Awaitable[int | None]]
    paths: re.Pattern[str]  # the answers it applies to (matched whole)


@dataclass(frozen=True, slots=True)
class Patch:
    """Where a refreshable entry's number sits: `body[at:at + length]`, for key `ident`
    at `slot` (a slot no other key of the entry uses)."""

    slot: int
    ident: int
    at: int
    length: int


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
    patch: Patch | None = None


def _patch_for(
    refresher: Refresher | None, path: str, names: list[str], body: bytes
) -> Patch | None:
    """Where `refresher` may bring this answer up to date, if anywhere."""
    if refresher is None or not refresher.paths.fullmatch(path):
        return None
    idents = [name[len(refresher.prefix) :] for name in names if name.startswith(refresher.prefix)]
    if len(idents) != 1 or not idents[0].isdigit() or body.count(refresher.field) != 1:
        return None
    key = refresher.prefix + idents[0]
    slot = slot_of(key)
    # A slot shared with another of its keys could not tell which of them moved.
    if any(slot_of(name) == slot for name in names if name != key):
        return None
    at = body.index(refresher.field) + len(refresher.field)
    end = at
    while end < len(body) and body[end : end + 1].isdigit():
        end += 1
    return Patch(slot, int(idents[0]), at, end - at) if end > at else None


def _patched(entry: Entry, value: int, since: int) -> Entry | None:
    """`entry` showing `value` as computed at `since`; None if its ETag cannot follow."""
    patch = entry.patch
    assert patch is not None
    digits = str(value).encode()
    body = entry.body[: patch.at] + digits + entry.body[patch.at + patch.length :]
    headers: list[tuple[bytes, bytes]] = []
    for name, header in entry.headers:
        if name == _ETAG:
            etag = retagged(header.decode("latin-1"), entry.body, body)
            if etag is None:
                return None
            header = etag.encode("latin-1")
        elif name == _LENGTH:
            header = str(len(body)).encode()
        headers.append((name, header))
    return replace(
        entry,
        since=since,
        checked=since,
        headers=headers,
        body=body,
        size=entry.size + len(body) - len(entry.body),
        patch=replace(patch, length=len(digits)),
    )


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

    def find(self, key: str, now: float) -> tuple[Entry, bool] | None:
        """The entry for `key` and whether it is valid; an invalid one only when its
        patch's key alone invalidated it (to be refreshed)."""
        self.sweep(now)
        entry = self.entries.get(key)
        if entry is None:
            return None
        clock = self.clock.now()
        if clock != entry.checked:
            if not self.clock.valid(entry.slots, entry.since):
                if self.stale(entry):
                    return entry, False
                self._drop(key)
                return None
            entry.checked = clock
        return entry, True

    def stale(self, entry: Entry) -> bool:
        """Whether `entry` was invalidated by its patch's key alone (and so can be patched)."""
        patch = entry.patch
        return (
            patch is not None
            and not self.clock.valid((patch.slot,), entry.since)
            and self.clock.valid(tuple(s for s in entry.slots if s != patch.slot), entry.since)
        )

    def swap(self, key: str, old: Entry, new: Entry) -> None:
        """Put `new` in place of `old` (same place in the expiry order), if `old` is still
        the entry for `key`."""
        if self.entries.get(key) is old:
            self.entries[key] = new
            self.bytes += new.size - old.size

    def discard(self, key: str, entry: Entry) -> None:
        if self.entries.get(key) is entry:
            self._drop(key)

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
        refresher: Refresher | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.routes = routes
        self.channel = channel
        self.refresher = refresher
        # (path's declared names, raw query) -> its canonical form: parsing and sorting a
        # query cost a hit a fifth of its time, and hot pages come with the same queries.
        self._queries: dict[tuple[frozenset[str], bytes], str] = {}

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
            known = self._queries.get((names, query))
            if known is None:
                if len(self._queries) >= 10_000:
                    self._queries.clear()
                known = self._queries[names, query] = canonical_query_string(query, names)
            key += "?" + known
        now = time.monotonic()
        found = self.store.find(key, now)
        if found is not None:
            entry: Entry | None = found[0]
            headers = found[0].headers
            if not found[1]:
                entry = await self._refresh(key, found[0])
                if entry is not None:
                    headers = [h for h in entry.headers if h[0] != _X_CACHE] + [_REFRESHED]
            if entry is not None:
                start = {"type": "http.response.start", "status": entry.status, "headers": headers}
                await send(start)
                await send({"type": "http.response.body", "body": entry.body})
                return
        await self._fill(scope, receive, send, key, now)

    async def _refresh(self, key: str, entry: Entry) -> Entry | None:
        """`entry` with its number read again; None: render the answer again instead."""
        store, patch = self.store, entry.patch
        assert self.refresher is not None
        assert patch is not None
        # As in `_fill`: a write answered before this request arrived has committed and
        # moved the clock before this reading of it, so the number read next includes it.
        since = store.clock.now()
        value = await self.refresher.value(patch.ident)
        fresh = _patched(entry, value, since) if value is not None else None
        if fresh is None or not store.stale(entry):
            # Cannot follow, or something else it shows changed meanwhile: render it anew.
            store.discard(key, entry)
            return None
        if store.clock.valid((patch.slot,), since) and self.channel.up:
            store.swap(key, entry, fresh)
        return fresh

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
        names = keys.parse(labels)
        slots = tuple({slot_of(k) for k in names})
        # An invalidation of any of these keys since `since` means the answer may predate it.
        if not store.clock.valid(slots, since):
            return
        headers.append((_X_CACHE, b"HIT"))
        body = b"".join(chunks)
        if not any(name == _ETAG for name, _ in headers):
            # What HttpCacheMiddleware would compute from the body on every hit (a digest
            # of 14 KB for a list page): once, here, and the same value.
            headers.append((_ETAG, etag_for(body).encode("latin-1")))
        patch = _patch_for(self.refresher, scope["path"], names, body)
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
                patch=patch,
            ),
        )
