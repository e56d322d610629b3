"""From "this transaction changed these keys" to invalidations, once it has committed.

Services name what they changed with `invalidate(session, *keys)`; nothing happens until the
session commits, and a rollback forgets the keys. A session bound to a `Publisher` (the
app's and the command line's are) then:

- with a CDN configured, queues a purge in the outbox, in the same transaction, sent and
  retried like a webhook (`cdn`);
- after the commit, before the request's answer leaves, invalidates the keys in this
  machine's clock, for all of its workers at once;
- on PostgreSQL, tells the other machines: the app through its channel connection, batched,
  right after the commit (`channel`); the command line, which has no channel, by a
  `NOTIFY newsroom_cache` inside its transaction, delivered only if it commits.

PostgreSQL's LISTEN/NOTIFY was chosen over Redis pub/sub: it needs no second service, it
reaches exactly the instances that share the data, and its connection's health is the
database's, so "the channel is down" and "the data may have changed unheard" coincide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from app.cache import keys
from app.cache.clock import KeyClock, slot_of
from app.core.db import utcnow
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus

CHANNEL = "newsroom_cache"
# NOTIFY payloads are limited to 8000 bytes: a larger set is sent as "everything".
MAX_PAYLOAD = 7900
_PENDING = "newsroom.cache.pending"
_PUBLISHER = "newsroom.cache.publisher"


def invalidate(session: AsyncSession | Session, *names: str) -> None:
    """Invalidate these keys if, and once, the session's transaction commits."""
    pending: set[str] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = set()
    pending.update(names)


def payload(origin: str, names: Iterable[str]) -> str:
    body = " ".join(sorted(names))
    if keys.ALL in names or len(body) + len(origin) + 1 > MAX_PAYLOAD:
        body = keys.ALL
    return f"{origin}|{body}"


class Publisher:
    def __init__(
        self,
        clock: KeyClock | None,
        *,
        notify: bool,
        cdn: bool,
        tell: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.clock = clock
        # Tell other machines: through `tell` after the commit, or by a NOTIFY in it.
        self.notify = notify
        self.tell = tell
        self.cdn = cdn
        self.origin = clock.origin if clock is not None else "-"
        # Called with the keys after each commit (the outbox worker wakes for CDN purges).
        self.after: list[Callable[[set[str]], None]] = []
        # What this process read from the database and may reuse while a key stays valid:
        # key -> (the clock before it was read, the value).
        self.memos: dict[str, tuple[int, Any]] = {}

    def recall(self, name: str) -> Any | None:
        """The value remembered under key `name`, if nothing invalidated it since."""
        found = self.memos.get(name)
        if found is None or self.clock is None:
            return None
        since, value = found
        return value if self.clock.valid((slot_of(name),), since) else None

    def since(self) -> int | None:
        """The clock to remember a value with, read before the value is."""
        return self.clock.now() if self.clock is not None else None

    def remember(self, name: str, since: int | None, value: Any) -> None:
        if since is not None:
            self.memos[name] = (since, value)

    def stage(self, session: Session, names: set[str]) -> None:
        """In the committing transaction: what must travel with it."""
        if self.notify and self.tell is None:
            session.execute(select(func.pg_notify(CHANNEL, payload(self.origin, names))))
        if self.cdn:
            now = utcnow()
            session.add(
                Delivery(
                    kind=DeliveryKind.purge,
                    event="purge",
                    payload=" ".join(sorted(names)) if keys.ALL not in names else keys.ALL,
                    status=DeliveryStatus.pending,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )

    def committed(self, names: set[str]) -> None:
        """Right after the commit, still before the answer is sent."""
        if self.clock is not None:
            if keys.ALL in names:
                self.clock.invalidate_all()
            else:
                self.clock.invalidate(names)
        if self.notify and self.tell is not None:
            self.tell(names)
        for callback in self.after:
            callback(names)


def bind(sessionmaker: async_sessionmaker[AsyncSession], publisher: Publisher) -> None:
    info: dict[str, Any] = dict(sessionmaker.kw.get("info") or {})
    info[_PUBLISHER] = publisher
    sessionmaker.configure(info=info)


def commit_writes(session: AsyncSession | Session) -> bool:
    """Whether committing invalidations writes to the database itself (a CDN purge in the
    outbox, a NOTIFY where there is no channel): a write that must share the transaction
    of what it invalidates, so that one cannot be stored without the other."""
    publisher = publisher_of(session)
    return publisher is not None and (
        publisher.cdn or (publisher.notify and publisher.tell is None)
    )


def publisher_of(session: AsyncSession | Session) -> Publisher | None:
    found = session.info.get(_PUBLISHER)
    return found if isinstance(found, Publisher) else None


@event.listens_for(Session, "before_commit")
def _stage(session: Session) -> None:
    pending = session.info.get(_PENDING)
    publisher = publisher_of(session)
    if pending and publisher is not None:
        publisher.stage(session, pending)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    publisher = publisher_of(session)
    if pending and publisher is not None:
        publisher.committed(pending)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    # Reached after `_committed` when the transaction committed; otherwise it rolled back
    # (or the session closed) and its keys name nothing that changed.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
