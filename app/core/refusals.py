"""Anonymous writes that keep being refused are answered 429 before routing.

A script looping a write the API refuses (a 401 for want of a token, a 422 comment, a
trailing-slash 307) costs the service routing, dependencies and validation each time, about
six cached reads' worth: one connection doing that takes a fifth of a two-core machine
from its readers. So each worker counts, per client address, the anonymous writes (no
`Authorization`) it answered with a redirect or a client error other than 429; past
`REFUSED_WRITE_LIMIT` in the window, that address's anonymous writes are answered 429
(`rate-limited`, with `Retry-After`) until the window ends, for the price of a dict lookup.
Reads, and writes with a token, are never counted or held up.

Counting is per worker and in memory, not shared through Redis: it is a brake on waste,
not an exact quota (the comment limits are those), and a round trip to Redis per refused
write would cost part of what it saves.
"""

from __future__ import annotations

import time

from limits import parse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.middleware import send_problem
from app.core.net import client_address

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Addresses remembered at most; past that, the counts start afresh (an attacker rotating
# addresses gains nothing from filling it: every address starts with its full allowance).
_MAX_CLIENTS = 10_000


def _refused(status: int) -> bool:
    return 300 <= status < 500 and status not in (304, 429)


class RefusedWritesMiddleware:
    def __init__(self, app: ASGIApp, *, limit: str, trusted_proxies: list[str]) -> None:
        """`limit`: the `limits` syntax, e.g. `30/10 seconds`."""
        self.app = app
        rule = parse(limit)
        self.allowed = rule.amount
        self.window = float(rule.get_expiry())
        self.trusted = trusted_proxies
        # address -> [refusals, end of its window]
        self.counts: dict[str, list[float]] = {}

    def _client(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.trusted:
            return str(peer)
        forwarded = b",".join(v for n, v in scope["headers"] if n == b"x-forwarded-for")
        return client_address(peer, forwarded.decode("latin-1"), self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        for name, _ in scope["headers"]:
            if name == b"authorization":
                await self.app(scope, receive, send)
                return
        address = self._client(scope)
        now = time.monotonic()
        count = self.counts.get(address)
        if count is not None and count[1] <= now:
            del self.counts[address]
            count = None
        if count is not None and count[0] >= self.allowed:
            wait = max(1, round(count[1] - now + 0.5))
            await send_problem(
                send,
                429,
                "rate-limited",
                f"Too many refused requests from this address: try again in {wait} s.",
                headers=[(b"retry-after", str(wait).encode())],
            )
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and _refused(message["status"]):
                self._count(address, time.monotonic())
            await send(message)

        await self.app(scope, receive, counting)

    def _count(self, address: str, now: float) -> None:
        count = self.counts.get(address)
        if count is None or count[1] <= now:
            if len(self.counts) >= _MAX_CLIENTS:
                self.counts.clear()
            self.counts[address] = [1, now + self.window]
        else:
            count[0] += 1
