"""The delivery worker: started in the app's lifespan (WEBHOOK_WORKER), it polls the outbox,
claims what is due, sends it and records the outcome. Any number of processes may run it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cache import cdn
from app.core.config import Settings
from app.core.db import utcnow
from app.mail import sender as mail
from app.outbox import service
from app.outbox.models import Delivery, DeliveryKind
from app.webhooks import sender as webhooks

log = logging.getLogger("app.outbox")

POLL_SECONDS = 2.0
BATCH = 20


async def _attempt(
    delivery: Delivery, settings: Settings, client: httpx.AsyncClient | None
) -> service.Outcome:
    try:
        if delivery.kind == DeliveryKind.webhook:
            assert client is not None
            return await webhooks.deliver(client, delivery, settings)
        return await mail.deliver(delivery, settings)
    except Exception as exc:  # one bad message must not stop the others
        log.exception("delivery %s crashed", delivery.id, exc_info=exc)
        return service.Outcome.retry(f"internal error: {type(exc).__name__}")


async def _purge(purges: list[Delivery], settings: Settings) -> service.Outcome:
    try:
        async with cdn.client(settings) as http:
            return await cdn.purge(http, settings, cdn.merged(d.payload for d in purges))
    except Exception as exc:
        log.exception("purge crashed", exc_info=exc)
        return service.Outcome.retry(f"internal error: {type(exc).__name__}")


async def process_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = BATCH,
) -> int:
    """One pass: claim what is due at `now` (default: the clock), send it concurrently,
    record the outcomes. Returns how many deliveries were attempted."""
    now = now or utcnow()
    async with sessionmaker() as session:
        claimed = await service.claim(session, now, limit)
    if not claimed:
        return 0
    purges = [d for d in claimed if d.kind == DeliveryKind.purge]
    claimed = [d for d in claimed if d.kind != DeliveryKind.purge] + purges
    client = (
        webhooks.client(settings) if any(d.kind == DeliveryKind.webhook for d in claimed) else None
    )
    try:
        outcomes = list(
            await asyncio.gather(
                *(_attempt(d, settings, client) for d in claimed[: len(claimed) - len(purges)]),
                *([_purge(purges, settings)] if purges else []),
            )
        )
    finally:
        if client is not None:
            await client.aclose()
    if purges:
        # One merged purge stands for every purge delivery of the batch.
        outcomes[-1:] = outcomes[-1:] * len(purges)
    async with sessionmaker() as session:
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            status = await service.record(
                session, delivery, outcome, now=now, max_attempts=settings.webhook_max_attempts
            )
            # Identifiers and status only: payloads carry readers' text and addresses, and a
            # webhook's URL its secret.
            log.info(
                "delivery %s (%s%s, %s) attempt %d: %s%s",
                delivery.id,
                delivery.kind,
                f" {delivery.webhook_id}" if delivery.webhook_id is not None else "",
                delivery.event,
                delivery.attempts,
                status or "claim lost",
                f" ({outcome.status_code})" if outcome.status_code else "",
            )
        await session.commit()
    return len(claimed)


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    poll_seconds: float = POLL_SECONDS,
    wake: asyncio.Event | None = None,
) -> None:
    """Forever: a pass, then a pause unless the pass found a full batch. `wake` ends the
    pause early (this process just queued something, e.g. a CDN purge)."""
    wake = wake or asyncio.Event()
    while True:
        wake.clear()
        try:
            attempted = await process_due(sessionmaker, settings)
        except Exception as exc:  # the database may be away for a while: keep going
            log.warning("outbox pass failed: %s", type(exc).__name__)
            attempted = 0
        if attempted < BATCH:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await wake.wait()


def start(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    wake: asyncio.Event | None = None,
) -> asyncio.Task[None] | None:
    """Called in the lifespan: hand the settings to the app's sessions (enqueueing reads them)
    and, with WEBHOOK_WORKER on, start the worker."""
    service.bind_settings(sessionmaker, settings)
    if not settings.webhook_worker:
        return None
    return asyncio.create_task(run(sessionmaker, settings, wake=wake), name="outbox-worker")


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
