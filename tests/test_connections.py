"""How requests use the database's connections: one pooled connection per request at a time,
waiters served in the order they came, a token's last use written once per period, and a
write that waits too long for a row lock answered 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.auth.models import ApiToken
from app.core import security
from app.core.db import FairQueuePool, utcnow
from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import assert_problem


class Held:
    """Connections each request holds from the app's pools (main and read), counted from
    the pools' own checkout and checkin events."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.before_answer = 0
        self.answered = False
        self.statements: list[str] = []

    def checkout(self, *_: Any) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        if not self.answered:
            self.before_answer += 1

    def checkin(self, *_: Any) -> None:
        self.now -= 1

    def statement(self, _conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        self.statements.append(sql)


@contextmanager
def counting(app: FastAPI) -> Iterator[Held]:
    held = Held()
    engines = {app.state.engine.sync_engine, app.state.read_engine.sync_engine}
    pools = {e.pool for e in engines}
    for pool in pools:
        event.listen(pool, "checkout", held.checkout)
        event.listen(pool, "checkin", held.checkin)
    event.listen(app.state.engine.sync_engine, "before_cursor_execute", held.statement)
    try:
        yield held
    finally:
        for pool in pools:
            event.remove(pool, "checkout", held.checkout)
            event.remove(pool, "checkin", held.checkin)
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", held.statement)


class TestOneConnectionPerRequest:
    async def test_a_token_request_answers_on_one_connection_and_never_holds_two(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        """The first use of a token in a resolution period writes its last-used time: after
        the answer, and never while the request holds another pooled connection."""
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        with counting(app) as held:

            async def marking(scope: Any, receive: Any, send: Any) -> None:
                async def noting(message: Any) -> None:
                    if message["type"] == "http.response.start":
                        held.answered = True
                    await send(message)

                await app(scope, receive, noting)

            transport = httpx.ASGITransport(app=marking)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                response = await c.get("/api/v1/comments", headers=bearer(token))
        assert response.status_code == 200
        assert held.most == 1, "two pooled connections held at once"
        assert held.before_answer == 1, "the answer waited for a second checkout"
        stored = await session.scalar(select(ApiToken.last_used_at))
        assert stored is not None, "the last use is recorded all the same"


class TestLastUsed:
    async def test_parallel_requests_write_the_last_use_once_per_period(
        self, app: FastAPI, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            with counting(app) as held:
                answers = await asyncio.gather(
                    *(c.get("/api/v1/comments", headers=bearer(token)) for _ in range(20))
                )
            assert [a.status_code for a in answers] == [200] * 20
            writes = [s for s in held.statements if s.lstrip().upper().startswith("UPDATE")]
            assert len(writes) == 1, writes
            first = await session.scalar(select(ApiToken.last_used_at))
            assert first is not None

            # A period later, the next request writes it again.
            earlier = first - security.LAST_USED_RESOLUTION - timedelta(seconds=1)
            await session.execute(update(ApiToken).values(last_used_at=earlier))
            await session.commit()
            security._claimed.clear()  # this process's memory of the write, a period on
            assert (await c.get("/api/v1/comments", headers=bearer(token))).status_code == 200
            session.expire_all()
            again = await session.scalar(select(ApiToken.last_used_at))
            assert again is not None
            assert again > earlier

    async def test_a_revoked_token_is_refused_and_its_last_use_left_alone(
        self, app: FastAPI, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        token = await make_token(session, editor)
        await session.execute(update(ApiToken).values(revoked_at=utcnow()))
        await session.commit()
        refused = await client.get("/api/v1/comments", headers=bearer(token))
        assert refused.status_code == 401
        assert await session.scalar(select(ApiToken.last_used_at)) is None


@pytest.fixture
async def fair_engine(database_url: str, backend: str) -> AsyncIterator[AsyncEngine]:
    if backend != "postgres":
        pytest.skip("the app's PostgreSQL pool")
    engine = create_async_engine(
        database_url, poolclass=FairQueuePool, pool_size=1, max_overflow=0, pool_timeout=5
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
class TestPoolOrder:
    async def test_a_waiter_is_served_before_a_request_that_asks_again(
        self, fair_engine: AsyncEngine
    ) -> None:
        """A request that gives its connection back and asks again at once (a commit
        mid-request) queues behind those already waiting, instead of taking it back."""
        order: list[str] = []
        first = await fair_engine.connect()
        await first.scalar(text("SELECT 1"))

        async def waiter() -> None:
            async with fair_engine.connect() as conn:
                order.append("waiter")
                await conn.scalar(text("SELECT 1"))

        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        await first.close()
        async with fair_engine.connect() as again:
            order.append("again")
            await again.scalar(text("SELECT 1"))
        await waiting
        assert order == ["waiter", "again"]

    async def test_a_waiter_that_gives_up_leaves_the_line(self, database_url: str) -> None:
        engine = create_async_engine(
            database_url, poolclass=FairQueuePool, pool_size=1, max_overflow=0, pool_timeout=0.2
        )
        try:
            holder = await engine.connect()
            await holder.scalar(text("SELECT 1"))
            with pytest.raises(Exception, match="QueuePool limit"):
                await engine.connect()
            await holder.close()
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()


@pytest.mark.postgres_only
class TestLockTimeout:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "db_lock_timeout_ms": 300,
            "comment_moderation": "none",
            "comment_flood_seconds": 0,
            "comment_rate_limit": "",
        }

    async def test_lock_timeout_is_set_on_every_connection(self, app: FastAPI) -> None:
        for engine in (app.state.engine, app.state.read_engine):
            async with engine.connect() as conn:
                assert await conn.scalar(text("SHOW lock_timeout")) == "300ms"

    async def test_a_post_waiting_longer_than_lock_timeout_answers_503(
        self, client: httpx.AsyncClient, session: AsyncSession, database_url: str
    ) -> None:
        article = await make_article(session, await make_user(session))
        other = create_async_engine(database_url)
        try:
            async with other.begin() as conn:
                # Another writer holds the article's row lock for longer than lock_timeout.
                await conn.execute(
                    text("SELECT id FROM articles WHERE id = :id FOR UPDATE"), {"id": article.id}
                )
                answer = await client.post(
                    f"/api/v1/articles/{article.id}/comments",
                    json={"author_name": "R", "author_email": "r@example.com", "content": "hi"},
                )
        finally:
            await other.dispose()
        assert_problem(answer, 503)
        assert answer.headers["retry-after"] == "5"
