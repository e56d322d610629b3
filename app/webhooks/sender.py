"""One webhook attempt: sign the stored body, POST it to the checked address, judge the answer.

Receivers verify `Webhook-Signature: v1=<hex>`, the HMAC-SHA256 of
`f"{Webhook-Timestamp}.{raw body}"` under the webhook's secret, and refuse timestamps more
than five minutes away from their clock (a replayed request)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import httpx

from app.core.config import Settings
from app.outbox.models import Delivery
from app.outbox.service import Outcome
from app.webhooks import targets


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds,
        follow_redirects=False,
        # No proxy from the environment: the request must reach the address we checked.
        trust_env=False,
        # No connection reuse: a pooled connection is keyed by address, and two hosts on one
        # address must not share a TLS session negotiated for the other's name.
        limits=httpx.Limits(
            max_connections=settings.webhook_concurrency, max_keepalive_connections=0
        ),
    )


async def deliver(http: httpx.AsyncClient, delivery: Delivery, settings: Settings) -> Outcome:
    """One attempt, within WEBHOOK_DEADLINE_SECONDS in all: the client's timeout bounds each
    wait alone, so a receiver that trickles its answer a byte at a time would hold the attempt
    (and its worker's slot) for ever."""
    deadline = settings.webhook_deadline_seconds
    try:
        async with asyncio.timeout(deadline):
            return await _deliver(http, delivery, settings)
    except TimeoutError:
        return Outcome.retry(f"No complete answer within {deadline:g} s.")


async def _deliver(http: httpx.AsyncClient, delivery: Delivery, settings: Settings) -> Outcome:
    hook = delivery.webhook
    if hook is None or not hook.active:
        return Outcome.final("The webhook is disabled.")
    try:
        target = await targets.check(hook.url, allow_private=settings.webhook_allow_private_targets)
    except targets.TargetRefused as exc:
        return Outcome.retry(str(exc))
    body = delivery.payload.encode()
    timestamp = str(int(time.time()))
    headers = {
        **target.headers,
        "Content-Type": "application/json",
        "User-Agent": f"{settings.site_name}-Webhooks",
        "Webhook-Id": str(delivery.id),
        "Webhook-Timestamp": timestamp,
        "Webhook-Signature": signature(hook.secret, timestamp, body),
    }
    request = http.build_request(
        "POST", target.url, content=body, headers=headers, extensions=target.extensions
    )
    try:
        # Only the status counts: the body is never read, so a receiver cannot fill our
        # memory with it.
        response = await http.send(request, stream=True)
        await response.aclose()
    except httpx.TimeoutException:
        return Outcome.retry(f"No answer within {settings.webhook_timeout_seconds:g} s.")
    except httpx.HTTPError as exc:
        return Outcome.retry(f"{type(exc).__name__}: {exc}")
    code = response.status_code
    if 200 <= code < 300:
        return Outcome.ok(code)
    if code == 410:
        return Outcome(False, code, "410 Gone: the webhook was disabled.", disable_webhook=True)
    if 300 <= code < 400:
        return Outcome.retry(f"HTTP {code}: redirects are not followed.", code)
    return Outcome.retry(f"HTTP {code}.", code)
