"""Test harness: every database test runs on SQLite and, when reachable (or required by
REQUIRE_POSTGRES=1, as in CI), on PostgreSQL. Each backend gets a database of its own for the
run, built by `alembic upgrade head`; each test starts from empty tables."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.core import security
from app.core.config import Settings
from app.main import create_app
from app.models import Base
from tests.support import Inbox, alembic_upgrade, free_port

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PG_URL = os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)
REQUIRE_PG = os.environ.get("REQUIRE_POSTGRES") == "1"


def _pg_answers() -> bool:
    url = make_url(PG_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


# Decided once at collection: PostgreSQL tests exist whenever they are wanted or possible.
# In CI (REQUIRE_POSTGRES=1) they always exist, so an unreachable server fails them.
BACKENDS = ["sqlite"]
if REQUIRE_PG or "TEST_POSTGRES_URL" in os.environ or _pg_answers():
    BACKENDS.append("postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked postgres_only exist only in their PostgreSQL variant."""
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("backend") == "sqlite"
        (dropped if item.get_closest_marker("postgres_only") and on_sqlite else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


async def _admin_execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def create_database(backend: str, tmp_dir: Path) -> str:
    """A new, empty database; returns its URL."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_dir / f'news-{uuid.uuid4().hex[:8]}.db'}"
    name = f"news_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(PG_URL, f'CREATE DATABASE "{name}"'))
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        asyncio.run(
            _admin_execute(PG_URL, f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        )


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """argon2id still, but with test-sized cost: hundreds of users are made per run."""
    original = security.password_hash
    security.password_hash = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024),))
    yield
    security.password_hash = original


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = create_database(backend, tmp_path_factory.mktemp(backend))
    try:
        alembic_upgrade(url)
        yield url
    finally:
        drop_database(url)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "redis_url": None,
        "log_level": "WARNING",
        # Tests change rows behind the app's back; the cache has tests of its own.
        "response_cache": False,
        # No background outbox polling racing each test's table cleanup; the webhook and
        # mail tests switch it on or drive the worker themselves.
        "webhook_worker": False,
        # Tests send many refused anonymous writes on purpose; the brake has tests of its own.
        "refused_write_limit": "",
        # Uploaded files of each app in a folder of their own, never the project's var/media.
        "media_root": Path(tempfile.gettempdir()) / f"newsroom-media-{uuid.uuid4().hex[:12]}",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to run its app with other settings."""
    return {}


@pytest.fixture
async def app(database_url: str, settings_overrides: dict[str, Any]) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url, **settings_overrides))
    async with LifespanManager(application):
        try:
            yield application
        finally:
            await _truncate(application)


async def _truncate(application: FastAPI) -> None:
    try:
        await _truncate_once(application)
    except DBAPIError as exc:
        # A test that cut the database's connections leaves dead ones pooled (the app
        # answers a write on one 503 and discards it): start the pool afresh.
        if not exc.connection_invalidated:
            raise
        await application.state.engine.dispose()
        await _truncate_once(application)


async def _truncate_once(application: FastAPI) -> None:
    engine = application.state.engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    if engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t}"' for t in tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    async with engine.connect() as conn:
        # Self-referencing rows (a category tree) cannot be deleted in one order otherwise.
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            for table in [*tables, "articles_fts"]:
                await conn.execute(text(f'DELETE FROM "{table}"'))
            await conn.commit()
        finally:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as s:
        yield s


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) on a free local port."""
    box = Inbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
