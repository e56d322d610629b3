"""Rate limits shared by every worker: in memory on one process, in Redis when configured."""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.core.config import Settings


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees a slot


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        storage: Storage
        if settings.redis_url:
            url = "async+" + settings.redis_url
            found = storage_from_string(url, implementation="redispy", key_prefix="newsroom")
            assert isinstance(found, Storage), "an async+ URL gives an async storage"
            storage = found
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    async def check(self, rule: str | RateLimitItem, *key: str) -> Verdict:
        """Whether one more hit fits, without counting it."""
        item = parse(rule) if isinstance(rule, str) else rule
        allowed = await self._strategy.test(item, *key)
        return await self._verdict(item, allowed, key)

    async def hit(self, rule: str | RateLimitItem, *key: str) -> Verdict:
        """Count one hit; `allowed` is False when it did not fit."""
        item = parse(rule) if isinstance(rule, str) else rule
        allowed = await self._strategy.hit(item, *key)
        return await self._verdict(item, allowed, key)

    async def _verdict(self, item: RateLimitItem, allowed: bool, key: tuple[str, ...]) -> Verdict:
        stats = await self._strategy.get_window_stats(item, *key)
        reset_after = max(0, int(stats.reset_time - time.time()) + 1)
        return Verdict(allowed, item.amount, stats.remaining, reset_after)

    async def reset(self) -> None:
        await self.storage.reset()
