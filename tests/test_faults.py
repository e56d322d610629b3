"""Faults the service must survive: the database going away under load, Redis going away,
SIGTERM under load, two worker processes racing, and slow clients."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.comments.models import Comment, CommentState
from app.main import create_app
from app.users.models import Role
from tests.conftest import make_settings
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import ServerProcess, TcpProxy, free_port, wait_until_healthy

pytestmark = pytest.mark.slow


@pytest.fixture
async def proxy(backend: str) -> AsyncIterator[TcpProxy]:
    from tests.conftest import PG_URL

    target = make_url(PG_URL)
    running = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await running.start()
    yield running
    await running.stop()


@pytest.mark.postgres_only
async def test_database_outage_under_load_loses_nothing(
    app: FastAPI, session: AsyncSession, database_url: str, proxy: TcpProxy
) -> None:
    """Reads and comment posts run while the database is cut and restored: every answer is
    2xx or a 503 problem with Retry-After (never a 500, never a hang), the service recovers
    with no restart, and every comment answered 201 is stored exactly once."""
    article = await make_article(session, await make_user(session))
    via_proxy = make_url(database_url).set(port=proxy.port).render_as_string(False)
    service = create_app(
        make_settings(
            via_proxy,
            db_connect_timeout=1.0,
            db_pool_timeout=2.0,
            comment_moderation="none",
            comment_flood_seconds=0,
            comment_rate_limit="",
        )
    )
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    problems: list[str] = []
    stop_at = time.monotonic() + 7.0

    async def reader(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            response = await client.get(f"/api/v1/articles/{article.id}/comments")
            record(response)

    async def poster(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            content = f"outage test {uuid.uuid4().hex}"
            response = await client.post(
                f"/api/v1/articles/{article.id}/comments",
                json={
                    "author_name": "R",
                    "author_email": f"{uuid.uuid4().hex}@example.com",
                    "content": content,
                },
            )
            record(response)
            if response.status_code == 201:
                accepted.append(content)

    def record(response: httpx.Response) -> None:
        statuses[response.status_code] += 1
        if response.status_code == 503:
            if (
                "retry-after" not in response.headers
                or response.headers["content-type"] != "application/problem+json"
            ):
                problems.append(f"bad 503: {response.headers}")
        elif response.status_code >= 500:
            problems.append(f"{response.status_code}: {response.text[:200]}")

    async def chaos() -> None:
        await asyncio.sleep(1.5)
        await proxy.cut()
        await asyncio.sleep(2.0)
        await proxy.restore()

    async with LifespanManager(service):
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=15) as c:
            async with asyncio.timeout(30):
                await asyncio.gather(
                    chaos(), *(reader(c) for _ in range(4)), *(poster(c) for _ in range(4))
                )
            after = await c.get("/readyz")
            assert after.status_code == 200, "recovered by itself, no restart"
    assert not problems, problems[:5]
    assert statuses[503] > 0, "the outage was felt"
    assert statuses[200] > 0
    assert len(accepted) > 0
    stored = Counter(
        (
            await session.scalars(
                select(Comment.content_source).where(Comment.content_source.like("outage test %"))
            )
        ).all()
    )
    missing = [c for c in accepted if stored[c] != 1]
    assert not missing, f"{len(missing)} accepted comments are not stored exactly once"
    assert all(n == 1 for n in stored.values()), "a comment was stored twice"


async def test_redis_down_falls_back_to_local_limits(
    database_url: str, app: FastAPI, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    article = await make_article(session, await make_user(session))
    dead = f"redis://127.0.0.1:{free_port()}/0"
    service = create_app(make_settings(database_url, redis_url=dead, comment_moderation="none"))
    caplog.set_level(logging.WARNING)
    async with LifespanManager(service):
        transport = httpx.ASGITransport(app=service, client=("198.51.100.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            path = f"/api/v1/articles/{article.id}/comments"
            first = await client.post(
                path, json={"author_name": "R", "author_email": "r@example.com", "content": "1"}
            )
            assert first.status_code == 201
            flood = await client.post(
                path, json={"author_name": "R", "author_email": "r@example.com", "content": "2"}
            )
            assert flood.status_code == 429, "limits still hold, per process"
            login = await client.post(
                "/api/v1/auth/token", data={"username": "nobody", "password": "x" * 12}
            )
            assert login.status_code == 401
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


def _serve(env: dict[str, str], workers: int = 1) -> tuple[ServerProcess, str]:
    port = free_port()
    process = ServerProcess(
        Path(sys.executable),
        ["-m", "app", "serve", "--no-migrate"],
        {**os.environ, **env, "PORT": str(port), "WORKERS": str(workers), "LOG_LEVEL": "WARNING"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
    except AssertionError:
        # A server that never came up is still running: it must not outlive the test.
        process.stop()
        raise
    return process, base


async def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(
    app: FastAPI, session: AsyncSession, database_url: str
) -> None:
    author = await make_user(session)
    for _ in range(20):
        await make_article(session, author, body="<p>" + "word " * 2000 + "</p>")
    process, base = _serve({"DATABASE_URL": database_url, "RESPONSE_CACHE": "false"})
    results: list[int | str] = []

    async def one(client: httpx.AsyncClient) -> None:
        try:
            response = await client.get(f"{base}/api/v1/articles?per_page=100")
            results.append(response.status_code)
        except httpx.TransportError as exc:
            results.append(type(exc).__name__)

    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as c:
            first_wave = [asyncio.create_task(one(c)) for _ in range(60)]
            # Signal once the server is busy answering: the rest are in flight.
            await asyncio.wait(first_wave, return_when=asyncio.FIRST_COMPLETED)
            process.send_signal(signal.SIGTERM)
            await asyncio.gather(*first_wave)
            await asyncio.sleep(1.0)
            late = await asyncio.gather(
                *(c.get(f"{base}/healthz") for _ in range(3)), return_exceptions=True
            )
    finally:
        output = process.stop()
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status names it.
    assert process.returncode in (0, -signal.SIGTERM), output.decode(errors="replace")[-2000:]
    assert b"Traceback" not in output
    completed = [r for r in results if isinstance(r, int)]
    assert completed, f"some requests were in flight: {Counter(map(str, results))}"
    assert all(r == 200 for r in completed), Counter(map(str, results))
    refused = [r for r in results if isinstance(r, str)]
    assert all(r in ("ConnectError", "RemoteProtocolError", "ReadError") for r in refused)
    assert all(isinstance(r, httpx.ConnectError) for r in late), "new connections are refused"


async def test_a_slow_body_is_cut_off_and_does_not_hold_the_server(
    app: FastAPI, session: AsyncSession, database_url: str
) -> None:
    article = await make_article(session, await make_user(session))
    process, base = _serve({"DATABASE_URL": database_url, "BODY_TIMEOUT_SECONDS": "1.5"})
    port = int(base.rsplit(":", 1)[1])
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(
            f"POST /api/v1/articles/{article.id}/comments HTTP/1.1\r\nHost: x\r\n"
            'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"author'.encode()
        )
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(5):
                assert (await client.get(f"{base}/healthz")).status_code == 200
        assert time.monotonic() - started < 1.5, "other clients were served meanwhile"
        slow.settimeout(5)
        answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408")
        assert time.monotonic() - started < 4
        slow.close()
    finally:
        process.stop()


@pytest.mark.postgres_only
async def test_statement_timeout_is_set_on_every_connection(app: FastAPI) -> None:
    async with app.state.engine.connect() as conn:
        value = await conn.scalar(text("SHOW statement_timeout"))
    assert value == "10s"


@pytest.mark.postgres_only
async def test_two_workers_keep_the_count_exact_under_parallel_posts_and_moderation(
    app: FastAPI, session: AsyncSession, database_url: str
) -> None:
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    article = await make_article(session, editor)
    process, base = _serve(
        {
            "DATABASE_URL": database_url,
            "COMMENT_MODERATION": "none",
            "COMMENT_FLOOD_SECONDS": "0",
            "COMMENT_RATE_LIMIT": "",
            "DB_POOL_SIZE": "20",
        },
        workers=2,
    )
    path = f"{base}/api/v1/articles/{article.id}/comments"
    try:
        # Fresh connections: a pooled keep-alive connection can be closed by the server at the
        # very moment it is reused (a client-side race, not a server fault).
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as c:

            async def post(i: int) -> httpx.Response:
                return await c.post(
                    path,
                    json={
                        "author_name": "R",
                        "author_email": f"p{i}@example.com",
                        "content": f"parallel {i}",
                    },
                )

            posts = await asyncio.gather(*(post(i) for i in range(200)))
            assert Counter(p.status_code for p in posts) == {201: 200}
            ids = [p.json()["id"] for p in posts]
            moves = [
                c.patch(
                    f"{base}/api/v1/comments/{cid}",
                    json={"status": "spam" if i % 4 == 0 else "approved"},
                    headers=bearer(token),
                )
                for i, cid in enumerate(ids)
            ]
            more = [post(1000 + i) for i in range(50)]
            results = await asyncio.gather(*moves, *more)
            assert all(r.status_code in (200, 201) for r in results), Counter(
                r.status_code for r in results
            )

            # Two editors patch the same article from the same ETag: exactly one wins.
            etag = (
                await c.get(f"{base}/api/v1/articles/{article.id}", headers=bearer(token))
            ).headers["etag"]
            racers = await asyncio.gather(
                *(
                    c.patch(
                        f"{base}/api/v1/articles/{article.id}",
                        json={"title": f"Editor {n}"},
                        headers={**bearer(token), "If-Match": etag},
                    )
                    for n in range(2)
                )
            )
            assert sorted(r.status_code for r in racers) == [200, 412]
    finally:
        output = process.stop()
    await session.commit()
    approved = await session.scalar(
        select(func.count())
        .select_from(Comment)
        .where(Comment.article_id == article.id, Comment.status == CommentState.approved)
    )
    count = await session.scalar(
        text("SELECT comment_count FROM articles WHERE id = :id"), {"id": article.id}
    )
    assert approved == 150 + 50
    assert count == approved
    assert b"Traceback" not in output
