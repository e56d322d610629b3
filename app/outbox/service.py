"""Claiming due deliveries and recording what became of them.

A claim marks the row `sending`, moves `next_attempt_at` a lease ahead (if the worker dies,
the row is due again then) and counts the attempt, in a short transaction of its own; the
message is then sent with no transaction open; the result is written only if the row still
carries the attempt count of our claim (a fencing token), so a worker that overran its
lease cannot overwrite a newer attempt's result."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from app.cache import keys
from app.cache.publish import invalidate
from app.core.config import Settings, get_settings
from app.core.db import dialect_of
from app.outbox.models import DUE, Delivery, DeliveryKind, DeliveryStatus
from app.webhooks.models import Webhook

# Longer than any send can take (WEBHOOK_DEADLINE_SECONDS is capped well below it): only
# then may another worker retry.
CLAIM_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ERROR = 500
_SETTINGS_KEY = "newsroom.settings"
_random = secrets.SystemRandom()


def bind_settings(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Give every session of the app its settings: services that enqueue from inside a
    domain write (an article's URL for a webhook, whether email is configured) read them
    from the session, since they are not handed the request."""
    sessionmaker.configure(info={**(sessionmaker.kw.get("info") or {}), _SETTINGS_KEY: settings})


def settings_of(session: AsyncSession) -> Settings:
    found = session.info.get(_SETTINGS_KEY)
    return found if isinstance(found, Settings) else get_settings()


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 10 s doubling each time, ±20 %
    jitter (so receivers that come back are not hit by every retry at once), at most 1 h."""
    seconds = BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)
    seconds = min(BACKOFF_CAP_SECONDS, seconds * _random.uniform(0.8, 1.2))
    return timedelta(seconds=seconds)


async def claim(
    session: AsyncSession,
    now: datetime,
    limit: int,
    *,
    kinds: Collection[DeliveryKind] = tuple(DeliveryKind),
    skip_webhooks: Collection[int] = (),
    one_per_webhook: bool = False,
) -> list[Delivery]:
    """Take up to `limit` due deliveries of `kinds` for this worker and commit the claim:
    none for the webhooks in `skip_webhooks` (this worker is still sending to them), and
    with `one_per_webhook` at most one for each webhook (the next is claimed once it is done,
    so no claim waits its lease away behind a slow receiver).

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent workers take different rows without
    waiting. SQLite (one writer at a time, no row locks): each row is claimed by an UPDATE
    that only matches while the row is still as we read it."""
    due = (
        select(Delivery.id, Delivery.attempts, Delivery.webhook_id)
        .where(
            Delivery.status.in_(DUE),
            Delivery.next_attempt_at <= now,
            Delivery.kind.in_(list(kinds)),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if skip_webhooks:
        due = due.where(
            or_(Delivery.webhook_id.is_(None), Delivery.webhook_id.not_in(list(skip_webhooks)))
        )
    if dialect_of(session) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    candidates = (await session.execute(due)).all()
    claimed: list[uuid.UUID] = []
    taken: set[int] = set()
    for delivery_id, attempts, webhook_id in candidates:
        if one_per_webhook and webhook_id is not None:
            if webhook_id in taken:
                continue
            taken.add(webhook_id)
        result = cast(
            CursorResult[Any],
            await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.attempts == attempts,
                    Delivery.status.in_(DUE),
                    Delivery.next_attempt_at <= now,
                )
                .values(
                    status=DeliveryStatus.sending,
                    attempts=attempts + 1,
                    next_attempt_at=now + CLAIM_LEASE,
                    last_attempt_at=now,
                )
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            claimed.append(delivery_id)
    await session.commit()
    if not claimed:
        return []
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.id.in_(claimed))
        .options(selectinload(Delivery.webhook))
        .order_by(Delivery.created_at)
        .execution_options(populate_existing=True)
    )
    found = list(rows)
    await session.commit()
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    succeeded: bool
    status_code: int | None = None
    error: str | None = None
    give_up: bool = False  # retrying cannot help (a permanent refusal)
    disable_webhook: bool = False  # the receiver answered 410 Gone

    @classmethod
    def ok(cls, status_code: int | None = None) -> Outcome:
        return cls(True, status_code)

    @classmethod
    def retry(cls, error: str, status_code: int | None = None) -> Outcome:
        return cls(False, status_code, error)

    @classmethod
    def final(cls, error: str, status_code: int | None = None) -> Outcome:
        return cls(False, status_code, error, give_up=True)


async def record(
    session: AsyncSession,
    delivery: Delivery,
    outcome: Outcome,
    *,
    now: datetime,
    max_attempts: int,
) -> DeliveryStatus | None:
    """Write an attempt's result; None when the claim was lost meanwhile (nothing written)."""
    attempts = delivery.attempts
    values: dict[str, Any] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:MAX_ERROR] if outcome.error else None,
    }
    if outcome.succeeded:
        status = DeliveryStatus.succeeded
    elif outcome.give_up or outcome.disable_webhook or attempts >= max_attempts:
        status = DeliveryStatus.gave_up
    else:
        status = DeliveryStatus.failed
        values["next_attempt_at"] = now + backoff(attempts)
    if status == DeliveryStatus.succeeded and delivery.kind == DeliveryKind.purge:
        # A purge done is nothing to keep (there can be one per reader's comment).
        result = cast(
            CursorResult[Any],
            await session.execute(
                delete(Delivery).where(Delivery.id == delivery.id, Delivery.attempts == attempts)
            ),
        )
        return status if result.rowcount == 1 else None
    if status != DeliveryStatus.failed:
        values["next_attempt_at"] = None
        if delivery.kind == DeliveryKind.email:
            values["payload"] = ""  # addresses and text are not kept once the job is done
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.attempts == attempts)
            .values(status=status, **values)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        return None
    if outcome.disable_webhook and delivery.webhook_id is not None:
        await session.execute(
            update(Webhook)
            .where(Webhook.id == delivery.webhook_id)
            .values(active=False, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        invalidate(session, keys.WEBHOOKS)
    return status
