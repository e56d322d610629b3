"""Liveness and readiness."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import make_url

from app.main import create_app
from tests.conftest import PG_URL, make_settings


async def test_healthz_and_readyz_answer_ok(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        # A file in a directory that does not exist: SQLite cannot open it.
        return f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'news.db'}"
    return make_url(PG_URL).set(host="127.0.0.1", port=_closed_port()).render_as_string(False)


@pytest.fixture
async def client_without_database(unreachable_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(unreachable_url, db_connect_timeout=1.0))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_readyz_is_503_when_the_database_is_gone(
    client_without_database: httpx.AsyncClient,
) -> None:
    assert (await client_without_database.get("/healthz")).status_code == 200
    response = await client_without_database.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == 503


async def test_a_database_route_is_503_not_500_when_the_database_is_gone(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get(
        "/api/v1/users/me", headers={"Authorization": "Bearer nws_whatever"}
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" in response.headers
