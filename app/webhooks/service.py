"""Registering webhooks, queueing events for them, and their delivery log."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import keys
from app.cache.publish import invalidate, publisher_of
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.outbox.models import Delivery, DeliveryKind, DeliveryStatus
from app.webhooks import targets
from app.webhooks.models import Webhook
from app.webhooks.schemas import WebhookCreate

SECRET_PREFIX = "whsec_"  # noqa: S105 - a public marker, not a secret


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _check_target(url: str, settings: Settings) -> None:
    try:
        await targets.check(url, allow_private=settings.webhook_allow_private_targets)
    except targets.TargetRefused as exc:
        raise InvalidInput(str(exc), field="url") from None


# --- registering -------------------------------------------------------------------------


async def create(session: AsyncSession, data: WebhookCreate, settings: Settings) -> Webhook:
    await _check_target(str(data.url), settings)
    now = utcnow()
    hook = Webhook(
        url=str(data.url),
        events=data.events,
        description=data.description,
        active=data.active,
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        created_at=now,
        updated_at=now,
    )
    session.add(hook)
    await session.flush()
    invalidate(session, keys.WEBHOOKS)
    return hook


async def get(session: AsyncSession, webhook_id: int) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"No webhook {webhook_id}.")
    return hook


async def list_webhooks(
    session: AsyncSession, *, offset: int, limit: int
) -> tuple[list[Webhook], int]:
    total = await session.scalar(select(func.count()).select_from(Webhook)) or 0
    rows = await session.scalars(select(Webhook).order_by(Webhook.id).offset(offset).limit(limit))
    return list(rows), total


async def update(
    session: AsyncSession, hook: Webhook, changes: dict[str, Any], settings: Settings
) -> Webhook:
    for key in ("url", "events", "active"):
        if key in changes and changes[key] is None:
            raise InvalidInput(f"{key} cannot be null.", field=key)
    if "url" in changes and changes["url"] != hook.url:
        await _check_target(changes["url"], settings)
    for key, value in changes.items():
        setattr(hook, key, value)
    hook.updated_at = utcnow()
    await session.flush()
    invalidate(session, keys.WEBHOOKS)
    return hook


async def remove(session: AsyncSession, hook: Webhook) -> None:
    """Its delivery log goes with it (ON DELETE CASCADE)."""
    await session.delete(hook)
    await session.flush()
    invalidate(session, keys.WEBHOOKS)


# --- queueing ----------------------------------------------------------------------------


_ACTIVE_HOOKS = (
    select(Webhook.id, Webhook.events).where(Webhook.active.is_(True)).order_by(Webhook.id)
)


Hooks = list[tuple[int, list[str]]]


async def active_hooks(session: AsyncSession) -> Hooks:
    """(id, events) of the active webhooks. This runs with every approved comment, so each
    process remembers them until a webhook write anywhere invalidates `keys.WEBHOOKS`
    (through the cache's clock and channel, like any page: within milliseconds on other
    machines). Read ahead of the comment's own statement, which takes its article's row
    lock until the commit."""
    publisher = publisher_of(session)
    if publisher is not None:
        remembered = publisher.recall(keys.WEBHOOKS)
        if remembered is not None:
            return list(remembered)
    since = publisher.since() if publisher is not None else None
    rows = await (await session.connection()).execute(_ACTIVE_HOOKS)
    hooks = [(hook_id, events) for hook_id, events in rows]
    if publisher is not None:
        publisher.remember(keys.WEBHOOKS, since, tuple(hooks))
    return hooks


async def enqueue(
    session: AsyncSession,
    event: str,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
    hooks: Hooks | None = None,
) -> list[Delivery]:
    """One delivery per active webhook that wants `event` (`hooks`, when read already),
    added to the caller's transaction: sent only if the change commits, and never lost once
    it has."""
    now = now or utcnow()
    if hooks is None:
        hooks = await active_hooks(session)
    deliveries = []
    for hook_id, events in hooks:
        if event not in events:
            continue
        delivery_id = uuid.uuid4()
        body = {"id": str(delivery_id), "event": event, "occurred_at": rfc3339(now), "data": data}
        deliveries.append(
            Delivery(
                id=delivery_id,
                kind=DeliveryKind.webhook,
                webhook_id=hook_id,
                event=event,
                payload=orjson.dumps(body).decode(),
                status=DeliveryStatus.pending,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    session.add_all(deliveries)
    return deliveries


# --- the delivery log --------------------------------------------------------------------


async def deliveries(
    session: AsyncSession,
    hook: Webhook,
    *,
    status: DeliveryStatus | None,
    offset: int,
    limit: int,
) -> tuple[list[Delivery], int]:
    query = select(Delivery).where(Delivery.webhook_id == hook.id)
    if status is not None:
        query = query.where(Delivery.status == status)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Delivery.created_at.desc(), Delivery.id).offset(offset).limit(limit)
    )
    return list(rows), total


async def redeliver(session: AsyncSession, hook: Webhook, delivery_id: uuid.UUID) -> Delivery:
    """Queue a delivery again, now, with a fresh set of attempts. The body (and so its `id`)
    stays the same: receivers that already processed it can tell."""
    delivery = await session.scalar(
        select(Delivery)
        .where(Delivery.id == delivery_id, Delivery.webhook_id == hook.id)
        .with_for_update()
    )
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id} of webhook {hook.id}.")
    if delivery.status == DeliveryStatus.sending:
        raise Conflict("The delivery is being sent right now.")
    if not hook.active:
        raise Conflict("The webhook is disabled; set it active first.")
    delivery.status = DeliveryStatus.pending
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.last_error = None
    delivery.last_status_code = None
    await session.flush()
    return delivery
