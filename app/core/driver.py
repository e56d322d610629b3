"""Statements sent straight to asyncpg, for the few hottest queries (PostgreSQL only).

Through SQLAlchemy a statement costs 100-250 µs of CPU (statement cache, execution context,
result processing); asyncpg alone about 25 µs. The connection still comes from the app's
pool, on its session, so it is checked out, reset and returned as usual. The driver's
errors become the ones SQLAlchemy would raise: a connection the database dropped is
invalidated (the pool replaces it) and answered 503 like any other; the statement is kept
in the error, its parameters (readers' data) are not.

A driver statement sees SQLAlchemy's transaction only once SQLAlchemy has begun it on the
database (with its first statement); before that, or on an AUTOCOMMIT connection, it runs
on its own. Reads may run either way; a write that must share a transaction goes through
SQLAlchemy unless the connection is `autocommit`."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection


def autocommit(connection: AsyncConnection) -> bool:
    """Whether every statement on `connection` commits on its own (no transaction)."""
    sync = connection.sync_connection
    return sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


async def fetchrow(connection: AsyncConnection, sql: str, *args: Any) -> Any:
    """The first row (an `asyncpg.Record`, or None) of `sql` with `$1`... parameters."""
    return await _run(connection, "fetchrow", sql, args)


async def fetchval(connection: AsyncConnection, sql: str, *args: Any) -> Any:
    """The first column of the first row of `sql` (None when there is no row)."""
    return await _run(connection, "fetchval", sql, args)


async def _run(connection: AsyncConnection, method: str, sql: str, args: tuple[Any, ...]) -> Any:
    sync = connection.sync_connection
    if sync is not None and not sync.invalidated and not sync.closed:
        raw = sync.connection  # checked out already: no I/O, so no greenlet needed
    else:
        raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    try:
        return await getattr(driver, method)(sql, *args)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        if isinstance(exc, OSError) or driver.is_closed():
            await connection.invalidate(exc)
            raise DBAPIError(sql, None, exc, connection_invalidated=True) from exc
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            raise IntegrityError(sql, None, exc) from exc
        raise DBAPIError(sql, None, exc) from exc
