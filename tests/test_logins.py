"""Logins under load: parallel guesses are counted before any password is checked, in memory
and in Redis (and in memory again when Redis is down), and argon2 runs beside the event loop,
a bounded number at once."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import security
from tests.factories import PASSWORD, make_user
from tests.support import free_port

# Database 15: the rate-limit tests' keys never meet another suite's.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LOGIN = "/api/v1/auth/token"


class CountingHasher:
    """Our own password hasher, wrapped to count its checks and how many ran at once."""

    def __init__(self, inner: PasswordHash) -> None:
        self.inner = inner
        self.checks = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, password: str, hashed: str) -> bool:
        with self._lock:
            self.checks += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.inner.verify(password, hashed)
        finally:
            with self._lock:
                self.running -= 1


def counting(monkeypatch: pytest.MonkeyPatch, inner: PasswordHash) -> CountingHasher:
    hasher = CountingHasher(inner)
    monkeypatch.setattr(security, "password_hash", hasher)
    return hasher


async def login(client: httpx.AsyncClient, username: str, password: str) -> int:
    response = await client.post(LOGIN, data={"username": username, "password": password})
    return response.status_code


@pytest.fixture(params=["memory", "redis", "redis down"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    return f"test-logins-{uuid.uuid4().hex}"


@pytest.fixture
def settings_overrides(store: str, prefix: str) -> dict[str, Any]:
    limits = {"login_rate_limit": "5/minute", "login_rate_limit_ip": "30/minute"}
    if store == "memory":
        return limits
    # A port nobody listens on: every limiter call finds Redis down.
    url = REDIS_URL if store == "redis" else f"redis://127.0.0.1:{free_port()}/15"
    # Patient with a live Redis: on a loaded test machine 40 requests at once can take
    # longer than the production timeout, and a fallback would count in memory instead.
    return {**limits, "redis_url": url, "redis_prefix": prefix, "redis_timeout_seconds": 10}


@pytest.fixture
async def shared(
    store: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[list[str]]:
    """The Redis keys the test left (so it fails, not passes on memory, when Redis is
    unreachable); with Redis down, that the fallback was taken."""
    caplog.set_level(logging.WARNING, logger="app.ratelimit")
    keys: list[str] = []

    def fell_back() -> bool:
        return any("Redis unavailable" in r.getMessage() for r in caplog.get_records("call"))

    if store != "redis":
        yield keys
        assert fell_back() == (store == "redis down")
        return
    redis = aioredis.from_url(REDIS_URL)
    try:
        assert await redis.ping(), f"Redis at {REDIS_URL} must answer"
        yield keys
        assert not fell_back(), "Redis answered every limiter call in time"
        keys.extend([k.decode() async for k in redis.scan_iter(f"{prefix}*")])
        assert keys, "the limits were counted in Redis"
        await redis.delete(*keys)
    finally:
        await redis.aclose()


class TestParallelGuesses:
    @pytest.fixture
    def hasher(self, monkeypatch: pytest.MonkeyPatch, shared: list[str]) -> CountingHasher:
        return counting(monkeypatch, security.password_hash)

    async def test_only_the_limit_of_parallel_wrong_passwords_is_checked(
        self, client: httpx.AsyncClient, session: AsyncSession, hasher: CountingHasher
    ) -> None:
        await make_user(session, username="target")
        statuses = await asyncio.gather(*(login(client, "target", f"guess-{i}") for i in range(40)))
        assert sorted(statuses) == [401] * 5 + [429] * 35
        assert hasher.checks == 5, "the 35 refused were answered before any hashing"

    async def test_a_spray_over_many_names_stops_at_the_address_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, hasher: CountingHasher
    ) -> None:
        for i in range(40):
            await make_user(session, username=f"name{i}")
        statuses = await asyncio.gather(*(login(client, f"name{i}", "guess") for i in range(40)))
        assert sorted(statuses) == [401] * 30 + [429] * 10
        assert hasher.checks == 30

    async def test_the_right_password_forgives_the_names_failures(
        self, client: httpx.AsyncClient, session: AsyncSession, shared: list[str]
    ) -> None:
        await make_user(session, username="typist")
        assert [await login(client, "typist", "typo") for _ in range(4)] == [401] * 4
        assert await login(client, "typist", PASSWORD) == 200
        after = [await login(client, "typist", "typo") for _ in range(6)]
        assert after == [401] * 5 + [429]

    async def test_successful_logins_count_against_the_address(
        self, client: httpx.AsyncClient, session: AsyncSession, shared: list[str]
    ) -> None:
        await make_user(session, username="busy")
        assert [await login(client, "busy", PASSWORD) for _ in range(30)] == [200] * 30
        assert await login(client, "busy", PASSWORD) == 429


class TestHashingBesideTheLoop:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"login_rate_limit": "1000/minute", "login_rate_limit_ip": "1000/minute"}

    async def test_parallel_logins_at_production_cost_leave_the_loop_free(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        monkeypatch: pytest.MonkeyPatch,
        app: Any,
    ) -> None:
        hasher = counting(monkeypatch, PasswordHash((Argon2Hasher(),)))
        await make_user(session, username="crowd")
        logins_done = asyncio.Event()
        latencies: list[float] = []

        async def poll() -> None:
            # Timed from when the request was due, not from when the loop got round to
            # sending it: a blocked loop delays the sending as much as the answer.
            while not logins_done.is_set():
                due = time.perf_counter() + 0.005
                await asyncio.sleep(0.005)
                assert (await client.get("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - due)

        async def crowd() -> list[int]:
            try:
                return await asyncio.gather(*(login(client, "crowd", PASSWORD) for _ in range(20)))
            finally:
                logins_done.set()

        started = time.perf_counter()
        statuses, _ = await asyncio.gather(crowd(), poll())
        wall = time.perf_counter() - started
        assert statuses == [200] * 20
        worst = max(latencies)
        print(
            f"\n20 parallel production-cost logins: {wall:.2f} s; /healthz answered "
            f"{len(latencies)} times meanwhile, worst {worst * 1000:.0f} ms; "
            f"at most {hasher.peak} argon2 checks at once"
        )
        assert worst < 0.25 * wall
        assert hasher.checks == 20
        assert hasher.peak == app.state.settings.password_hash_concurrency
