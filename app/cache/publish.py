"""From "this transaction changed these keys" to invalidations, once it has committed.

Services name what they changed with `invalidate(session, *keys)`; nothing happens until the
session commits, and a rollback forgets the keys. A session bound to a `Publisher` (the
app's and the command line's are) then:

- on PostgreSQL, sends `NOTIFY newsroom_cache` inside the transaction: PostgreSQL delivers it
  to every listening instance when, and only if, the transaction commits (`channel`);
- with a CDN configured, queues a purge in the outbox, in the same transaction, sent and
  retried like a webhook (`cdn`);
- after the commit, before the request's answer leaves, invalidates the keys in this
  machine's clock, for all of its workers at once.

PostgreSQL's NOTIFY was chosen over Redis pub/sub: it is transactional (no invalidation for a
write that rolled back, none lost between a commit and a publish), it needs no second
service, and it reaches exactly the instances that share the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from app.cache import keys
from app.cache.clock import KeyClock
from app.core.db import utcnow
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus

CHANNEL = "newsroom_cache"
# NOTIFY payloads are limited to 8000 bytes: a larger set is sent as "everything".
MAX_PAYLOAD = 7900
_PENDING = "newsroom.cache.pending"
_SENT = "newsroom.cache.sent"
_PUBLISHER = "newsroom.cache.publisher"


def invalidate(session: AsyncSession | Session, *names: str) -> None:
    """Invalidate these keys if, and once, the session's transaction commits."""
    pending: set[str] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = set()
    pending.update(names)


async def send_now(session: AsyncSession) -> None:
    """Send the NOTIFY of the keys named so far now rather than at the commit (it is still
    delivered only if the transaction commits): for a write that is about to take a lock
    held until its commit, one round trip fewer under the lock."""
    publisher = publisher_of(session)
    pending: set[str] | None = session.info.get(_PENDING)
    if publisher is None or not publisher.notify or not pending:
        return
    sent: set[str] = session.info.setdefault(_SENT, set())
    fresh = pending - sent
    if fresh:
        await session.execute(select(func.pg_notify(CHANNEL, payload(publisher.origin, fresh))))
        sent |= fresh


def payload(origin: str, names: Iterable[str]) -> str:
    body = " ".join(sorted(names))
    if keys.ALL in names or len(body) + len(origin) + 1 > MAX_PAYLOAD:
        body = keys.ALL
    return f"{origin}|{body}"


class Publisher:
    def __init__(self, clock: KeyClock | None, *, notify: bool, cdn: bool) -> None:
        self.clock = clock
        self.notify = notify
        self.cdn = cdn
        self.origin = clock.origin if clock is not None else "-"
        # Called with the keys after each commit (the outbox worker wakes for CDN purges).
        self.after: list[Callable[[set[str]], None]] = []

    def stage(self, session: Session, names: set[str]) -> None:
        """In the committing transaction: what must travel with it."""
        unsent = names - session.info.get(_SENT, set())
        if self.notify and unsent:
            session.execute(select(func.pg_notify(CHANNEL, payload(self.origin, unsent))))
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
        for callback in self.after:
            callback(names)


def bind(sessionmaker: async_sessionmaker[AsyncSession], publisher: Publisher) -> None:
    info: dict[str, Any] = dict(sessionmaker.kw.get("info") or {})
    info[_PUBLISHER] = publisher
    sessionmaker.configure(info=info)


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
        session.info.pop(_SENT, None)
