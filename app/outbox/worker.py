"""The delivery worker: started in the app's lifespan (WEBHOOK_WORKER), it polls the outbox,
claims what is due, sends it and records the outcome. Any number of processes may run it.

It never waits for a send before claiming more: each claimed delivery goes to a lane (see
`Dispatcher`), and what is claimed next leaves out the webhooks still being sent to, so a
receiver that takes its whole WEBHOOK_DEADLINE_SECONDS holds up nothing but itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from dataclasses import dataclass
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
    delivery: Delivery, settings: Settings, client: httpx.AsyncClient
) -> service.Outcome:
    try:
        if delivery.kind == DeliveryKind.webhook:
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


def _lane(delivery: Delivery) -> str:
    """Deliveries in one lane go one after the other: a webhook's lane is its receiver's
    host (two webhooks on one host share it), so a slow receiver holds one slot, its own."""
    if delivery.kind == DeliveryKind.webhook and delivery.webhook is not None:
        url = httpx.URL(delivery.webhook.url)
        return f"webhook {url.host.lower()}:{url.port or url.scheme}"
    return f"{delivery.kind} {delivery.id}"


@dataclass(eq=False)
class _Job:
    deliveries: list[Delivery]  # more than one: purges merged into one request
    now: datetime  # of the claim, which the backoff counts from


class Dispatcher:
    """Sends claimed deliveries and records each outcome as soon as it is known.

    Lanes run side by side, each holding a slot while it sends: webhook lanes share
    WEBHOOK_CONCURRENCY slots, and emails and purges as many slots of their own, so neither
    ever waits for a receiver."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.http = webhooks.client(settings)
        self.changed = asyncio.Event()  # set whenever a job is done: its webhook is free
        self._slots = {
            DeliveryKind.webhook: asyncio.Semaphore(settings.webhook_concurrency),
            DeliveryKind.email: asyncio.Semaphore(settings.webhook_concurrency),
        }
        self._lanes: dict[str, deque[_Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recording = asyncio.Lock()
        self.waiting: Counter[DeliveryKind] = Counter()  # jobs claimed, not started
        self.busy: Counter[int] = Counter()  # webhook id → its deliveries claimed, not done

    def submit(self, claimed: list[Delivery], now: datetime) -> None:
        purges = [d for d in claimed if d.kind == DeliveryKind.purge]
        jobs = [_Job([d], now) for d in claimed if d.kind != DeliveryKind.purge]
        if purges:
            jobs.append(_Job(purges, now))
        for job in jobs:
            first = job.deliveries[0]
            if first.webhook_id is not None:
                self.busy[first.webhook_id] += 1
            self.waiting[self._kind(job)] += 1
            lane = _lane(first)
            queued = self._lanes.get(lane)
            if queued is not None:
                queued.append(job)
                continue
            self._lanes[lane] = deque([job])
            task = asyncio.create_task(self._drain(lane), name=f"outbox {lane}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _kind(job: _Job) -> DeliveryKind:
        # Purges take email's slots: both are ours to send, never a receiver's to hold up.
        kind = job.deliveries[0].kind
        return DeliveryKind.webhook if kind == DeliveryKind.webhook else DeliveryKind.email

    async def _drain(self, lane: str) -> None:
        queued = self._lanes[lane]
        try:
            while queued:
                job = queued[0]
                kind = self._kind(job)
                async with self._slots[kind]:
                    self.waiting[kind] -= 1
                    await self._run(job)
                queued.popleft()
                self.changed.set()
        finally:
            del self._lanes[lane]

    async def _run(self, job: _Job) -> None:
        first = job.deliveries[0]
        try:
            if first.kind == DeliveryKind.purge:
                outcome = await _purge(job.deliveries, self.settings)
            else:
                outcome = await _attempt(first, self.settings, self.http)
            await self._record(job, outcome)
        except Exception as exc:  # the database may be away: the lease brings it back
            log.warning("recording delivery %s failed: %s", first.id, type(exc).__name__)
        finally:
            if first.webhook_id is not None:
                self.busy[first.webhook_id] -= 1
                if not self.busy[first.webhook_id]:
                    del self.busy[first.webhook_id]

    async def _record(self, job: _Job, outcome: service.Outcome) -> None:
        # One at a time: the worker holds one of the pool's connections at most, however many
        # lanes finish together.
        async with self._recording, self.sessionmaker() as session:
            # One merged purge stands for every purge delivery of the batch.
            for delivery in job.deliveries:
                status = await service.record(
                    session,
                    delivery,
                    outcome,
                    now=job.now,
                    max_attempts=self.settings.webhook_max_attempts,
                )
                # Identifiers and status only: payloads carry readers' text and addresses,
                # and a webhook's URL its secret.
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

    async def join(self) -> None:
        """Wait until everything submitted is sent and recorded."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()


async def process_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = BATCH,
) -> int:
    """One pass: claim what is due at `now` (default: the clock), send it (lanes side by
    side), record the outcomes. Returns how many deliveries were attempted."""
    now = now or utcnow()
    async with sessionmaker() as session:
        claimed = await service.claim(session, now, limit)
    if not claimed:
        return 0
    dispatcher = Dispatcher(sessionmaker, settings)
    try:
        dispatcher.submit(claimed, now)
        await dispatcher.join()
    finally:
        await dispatcher.aclose()
    return len(claimed)


async def _claim_more(dispatcher: Dispatcher) -> int:
    """Claim what this worker can start now: of each kind, unless a batch of it already
    waits for a slot; never a second delivery for a webhook still being sent to."""
    kinds = [
        kind
        for kind in DeliveryKind
        if dispatcher.waiting[DeliveryKind.email if kind == DeliveryKind.purge else kind] < BATCH
    ]
    if not kinds:
        return 0
    now = utcnow()
    async with dispatcher.sessionmaker() as session:
        claimed = await service.claim(
            session,
            now,
            BATCH,
            kinds=kinds,
            skip_webhooks=set(dispatcher.busy),
            one_per_webhook=True,
        )
    dispatcher.submit(claimed, now)
    return len(claimed)


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    poll_seconds: float = POLL_SECONDS,
    wake: asyncio.Event | None = None,
) -> None:
    """Forever: claim what is due and hand it to the lanes without waiting for it to be
    sent, then pause until the poll interval passes, `wake` is set (this process just queued
    something, e.g. a CDN purge) or a delivery is done (its webhook may have more)."""
    wake = wake or asyncio.Event()
    dispatcher = Dispatcher(sessionmaker, settings)
    try:
        while True:
            wake.clear()
            dispatcher.changed.clear()
            try:
                claimed = await _claim_more(dispatcher)
            except Exception as exc:  # the database may be away for a while: keep going
                log.warning("outbox pass failed: %s", type(exc).__name__)
                claimed = 0
            if claimed:
                continue
            waits = [asyncio.ensure_future(e.wait()) for e in (wake, dispatcher.changed)]
            try:
                await asyncio.wait(waits, timeout=poll_seconds, return_when="FIRST_COMPLETED")
            finally:
                for waiting in waits:
                    waiting.cancel()
    finally:
        await dispatcher.aclose()


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
