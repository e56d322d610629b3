"""The data layer's base: metadata with a naming convention, engine, sessions."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from app.core.config import Settings

log = logging.getLogger("app.db")

T = TypeVar("T")

# Named constraints let Alembic alter and drop them on SQLite (batch mode) and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, always stored and returned in UTC.

    SQLite has no zone-aware type and hands back naive values; this makes both databases
    behave the same, and refuses naive input rather than guessing its zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: one fixed format keeps ordering right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Search structures that are dialect-specific, so they live in the migrations only.
_MIGRATION_ONLY_TABLES = ("articles_fts", "listing_generation")
_MIGRATION_ONLY_COLUMNS = {("articles", "search_vector")}
_MIGRATION_ONLY_INDEXES = {"ix_articles_search_vector"}


def managed_by_migrations_only(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic `include_object` hook: False for the objects the models do not describe."""
    if type_ == "table" and name and name.startswith(_MIGRATION_ONLY_TABLES):
        return False
    if type_ == "column" and (getattr(obj.table, "name", None), name) in _MIGRATION_ONLY_COLUMNS:
        return False
    return not (type_ == "index" and name in _MIGRATION_ONLY_INDEXES)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class FairQueue(QueueCommon[T]):
    """The pool's idle connections, handed out first come, first served.

    asyncio.Queue wakes its oldest waiter when a connection comes back, but whoever asks
    before that waiter runs takes the connection (SQLAlchemy tries `get_nowait` first), and
    the waiter goes to the back of the line. A request that gives its connection back and
    asks again at once (a commit mid-request) thus jumps everyone waiting, and under load
    the oldest waiters run out their `pool_timeout` while newer ones are served. Here a
    connection given back while someone waits is handed to the oldest waiter directly."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._idle: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        # Never blocks: the pool only gives back what it handed out, so there is room.
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._idle:
            raise Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._idle or not block:
            return self.get_nowait()
        return await_(self._wait(timeout))

    async def _wait(self, seconds: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection at the moment we gave up: the next waiter takes it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
                # A cancelled waiter may already have been passed over by `put_nowait`.
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Empty() from exc
            raise


class FairQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool, its waiters served in the order they came (`FairQueue`)."""

    _queue_class = FairQueue[ConnectionPoolEntry]


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """The app's engine (`pool_size`: a fixed pool other than the main one; no overflow, as
    connections opened at peaks and closed after them cost a PostgreSQL process each). Its
    errors never carry the statement's bound parameters: they are readers' data (emails,
    addresses, token digests), and errors end up in logs."""
    url = settings.database_url
    if settings.is_sqlite:
        engine = create_async_engine(url, connect_args={"timeout": 5}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    server_settings = {"application_name": "newsroom-api"}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    if settings.db_lock_timeout_ms:
        server_settings["lock_timeout"] = str(settings.db_lock_timeout_ms)
    if settings.db_generic_plans:
        server_settings["plan_cache_mode"] = "force_generic_plan"
    return create_async_engine(
        url,
        poolclass=FairQueuePool,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0 if pool_size else settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=settings.db_pool_pre_ping,
        hide_parameters=True,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": server_settings,
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit, so a route can commit and then shape its response.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


_AFTERWARDS = "app.db.afterwards"

Afterwards = Callable[[AsyncSession], Awaitable[None]]


def afterwards(session: AsyncSession, work: Afterwards) -> None:
    """Run `work` on the request's session once the request is done with it (after the
    answer is sent), in a transaction of its own that `work` commits: bookkeeping that must
    neither hold the answer up nor share the route's fate, and that never needs a second
    connection while the route holds one."""
    session.info.setdefault(_AFTERWARDS, []).append(work)


async def _close(session: AsyncSession) -> None:
    try:
        await session.close()
    except DBAPIError as exc:
        # The connection died after the answer was decided (often after it was sent): the
        # pool drops it; there is nothing left to tell the client.
        log.warning("database session closed on a dead connection: %s", type(exc).__name__)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Routes that write commit explicitly before they return,
    so the client never sees a success for a change that later failed to commit."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    session = sessionmaker()
    try:
        yield session
    finally:
        # A session the route never used (the read path has its own connection) holds
        # nothing: closing it would only cost time.
        if session.in_transaction() or session.identity_map:
            await _close(session)
        for work in session.info.pop(_AFTERWARDS, ()):
            try:
                await work(session)
            except (DBAPIError, PoolTimeoutError) as exc:
                # Bookkeeping only: the answer has gone, and the next request tries again.
                log.warning("deferred database write failed: %s", type(exc).__name__)
            finally:
                await _close(session)


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def read_only(request: Request, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work`, which only reads, on an autocommit connection: no BEGIN and ROLLBACK round
    trips (each statement sees committed data, as it would in a READ COMMITTED transaction).
    A pooled connection the database has dropped fails on first use; reads are safe to
    repeat, so that happens once, invisibly, on a fresh connection."""
    return await read_with(request.app.state.read_engine, work)


async def read_with(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`read_only` on `engine` (the app's `read_engine`), outside any request."""
    for attempt in (1, 2):
        try:
            connection = await engine.connect()
            try:
                return await work(connection)
            finally:
                # Not `async with`: its exit closes in a task of its own, shielded from
                # cancellation, which costs three turns of the event loop (some 15 ms
                # under load, more than the statement). Closing an autocommit connection
                # sends nothing and never suspends, so nothing can cut it short.
                await connection.close()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")
