"""Rate limits shared by every worker: in memory on one process, in Redis when configured.

When Redis is configured but cannot be reached, limits fall back to this process's memory
(with a warning) instead of failing: readers can still comment, each worker still enforces
the flood and hourly limits for the clients it serves, and exact duplicates are refused by
the database anyway. Refusing every comment during a cache outage would lose readers'
replies for a problem that is ours, not theirs. Redis is tried again after a short pause.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.core.config import Settings

log = logging.getLogger("app.ratelimit")
RETRY_SHARED_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees a slot


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if settings.redis_url:
            found = storage_from_string(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=settings.redis_prefix,
                wrap_exceptions=True,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
            assert isinstance(found, Storage), "an async+ URL gives an async storage"
            self._shared = MovingWindowRateLimiter(found)
        self._shared_down_until = 0.0

    def _strategy(self) -> MovingWindowRateLimiter:
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            return self._shared
        return self._local

    async def check(self, rule: str | RateLimitItem, *key: str) -> Verdict:
        """Whether one more hit fits, without counting it."""
        verdict = await self._apply("test", rule, key)
        assert verdict is not None
        return verdict

    async def hit(self, rule: str | RateLimitItem, *key: str) -> Verdict:
        """Count one hit; `allowed` is False when it did not fit."""
        verdict = await self._apply("hit", rule, key)
        assert verdict is not None
        return verdict

    async def count(self, rule: str | RateLimitItem, *key: str) -> None:
        """Count one hit without reading back where it leaves the client: one round trip
        to Redis instead of two."""
        await self._apply("count", rule, key)

    async def clear(self, rule: str | RateLimitItem, *key: str) -> None:
        """Forget every hit counted against `key`."""
        await self._apply("clear", rule, key)

    async def _apply(
        self, how: str, rule: str | RateLimitItem, key: tuple[str, ...]
    ) -> Verdict | None:
        item = parse(rule) if isinstance(rule, str) else rule
        strategy = self._strategy()
        try:
            return await self._verdict(strategy, how, item, key)
        except Exception as exc:  # any storage failure: Redis down, timeout, protocol error
            if strategy is self._local:
                raise
            self._shared_down_until = time.monotonic() + RETRY_SHARED_AFTER
            log.warning(
                "Redis unavailable for rate limits; using per-process limits",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return await self._verdict(self._local, how, item, key)

    @staticmethod
    async def _verdict(
        strategy: MovingWindowRateLimiter, how: str, item: RateLimitItem, key: tuple[str, ...]
    ) -> Verdict | None:
        if how == "clear":
            await strategy.clear(item, *key)
            return None
        if how == "test":
            # What `strategy.test` and `strategy.get_window_stats` each read: read it once.
            storage = cast(MovingWindowSupport, strategy.storage)
            window_start, hits = await storage.get_moving_window(
                item.key_for(*key), item.amount, item.get_expiry()
            )
            allowed = hits <= item.amount - 1
            reset_time, remaining = window_start + item.get_expiry(), item.amount - hits
        else:
            allowed = await strategy.hit(item, *key)
            if how == "count":
                return None
            stats = await strategy.get_window_stats(item, *key)
            reset_time, remaining = stats.reset_time, stats.remaining
        reset_after = max(0, int(reset_time - time.time()) + 1)
        return Verdict(allowed, item.amount, remaining, reset_after)
