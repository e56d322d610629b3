"""The Alembic chain is the only source of the schema, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.db import managed_by_migrations_only
from app.models import Base
from tests.conftest import create_database, drop_database
from tests.support import alembic_downgrade, alembic_upgrade


async def _schema_diff(url: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:

            def compare(sync_conn):  # type: ignore[no-untyped-def]
                ctx = MigrationContext.configure(
                    sync_conn,
                    opts={
                        "compare_type": True,
                        "compare_server_default": True,
                        "include_object": managed_by_migrations_only,
                    },
                )
                return compare_metadata(ctx, Base.metadata), set(
                    inspect(sync_conn).get_table_names()
                )

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def _run(fn: Callable[..., None], *args: str) -> None:
    # Alembic's env.py runs its own event loop, so it must not share this one.
    await asyncio.to_thread(fn, *args)


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    url = create_database(backend, tmp_path)
    yield url
    drop_database(url)


class TestMigrations:
    async def test_upgrade_downgrade_upgrade_round_trip(self, fresh_url: str) -> None:
        await _run(alembic_upgrade, fresh_url)
        _, tables = await _schema_diff(fresh_url)
        assert {"users", "api_tokens", "articles"} <= tables

        await _run(alembic_downgrade, fresh_url, "base")
        _, tables = await _schema_diff(fresh_url)
        assert tables <= {"alembic_version"}

        await _run(alembic_upgrade, fresh_url)
        diff, tables = await _schema_diff(fresh_url)
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        assert diff == []

    async def test_models_and_migrations_agree(self, database_url: str) -> None:
        diff, _ = await _schema_diff(database_url)
        assert diff == [], f"models and migrations differ: {diff}"

    async def test_0007_takes_login_names_out_of_public_view(self, fresh_url: str) -> None:
        await _run(alembic_upgrade, fresh_url, "0006")
        before = [
            # (login, display name, slug) as the old fallback left them, and others.
            ("taken", "Staff", "staff"),
            ("jdoe", "jdoe", "jdoe"),
            ("kim", "Kim Lee", "kim"),
            ("pat", "Pat Writer", "pat-writer"),
            ("farid", "Farid", "farid"),
            ("old.hand", "old.hand", "old-hand-2"),
        ]
        engine = create_async_engine(fresh_url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                for login, name, slug in before:
                    await conn.execute(
                        text(
                            "INSERT INTO users (username, password_hash, role, is_active,"
                            " display_name, slug, created_at, updated_at) VALUES (:u, 'x',"
                            " 'author', true, :n, :s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                        ),
                        {"u": login, "n": name, "s": slug},
                    )
            expected = {
                "taken": ("Staff", "staff"),
                "jdoe": ("Staff", "staff-2"),
                "kim": ("Kim Lee", "kim-lee"),
                "pat": ("Pat Writer", "pat-writer"),
                "farid": ("Farid", "farid"),
                "old.hand": ("Staff", "staff-3"),
            }
            for _ in range(2):  # and again after a downgrade: nothing moves twice
                await _run(alembic_upgrade, fresh_url)
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        text("SELECT username, display_name, slug FROM users")
                    )
                    assert {u: (n, s) for u, n, s in rows} == expected
                await _run(alembic_downgrade, fresh_url, "0006")
        finally:
            await engine.dispose()
