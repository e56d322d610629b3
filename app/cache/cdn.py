"""Purging invalidated keys from the CDN in front of the API (CDN_PURGE).

Purges are outbox deliveries (kind `purge`, queued with the write that changed the keys,
see `publish`): sent by the delivery worker, retried like webhooks, and merged, so one batch
of due purges is one request per target. A purge of `all` purges everything.

- `varnish`: `PURGE /` with `xkey-purge: <keys>` to each of CDN_PURGE_URLS (the shipped VCL
  in deploy/varnish/ purges the objects carrying any of them with vmod xkey);
- `fastly`: `POST /service/{FASTLY_SERVICE_ID}/purge` with `Surrogate-Key` (256 keys a
  request), or `/purge_all`;
- `cloudflare`: `POST /zones/{CLOUDFLARE_ZONE_ID}/purge_cache` with `{"tags": [...]}` (100 a
  request), or `{"purge_everything": true}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx

from app.cache import keys
from app.core.config import Settings
from app.outbox.service import Outcome

FASTLY_BATCH = 256
CLOUDFLARE_BATCH = 100


def merged(payloads: Iterable[str]) -> list[str]:
    """The keys of several purge deliveries, once each (`all` alone if any purges all)."""
    found = {key for payload in payloads for key in keys.parse(payload)}
    return [keys.ALL] if keys.ALL in found else sorted(found)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
    )


async def _send(http: httpx.AsyncClient, request: httpx.Request) -> Outcome | None:
    """None when the target took it; the outcome to retry with otherwise."""
    try:
        # Only the status counts (the body is never read).
        response = await http.send(request, stream=True)
        await response.aclose()
    except httpx.TimeoutException:
        return Outcome.retry(f"{request.url.host}: no answer in time.")
    except httpx.HTTPError as exc:
        return Outcome.retry(f"{request.url.host}: {type(exc).__name__}.")
    if 200 <= response.status_code < 300:
        return None
    return Outcome.retry(f"{request.url.host}: HTTP {response.status_code}.", response.status_code)


def requests(settings: Settings, names: list[str]) -> list[httpx.Request]:
    """The purge requests for these keys at the configured target."""
    everything = names == [keys.ALL]
    match settings.cdn_purge:
        case "varnish":
            return [
                httpx.Request(
                    "PURGE", url.rstrip("/") + "/", headers={"xkey-purge": " ".join(names)}
                )
                for url in settings.cdn_purge_urls
            ]
        case "fastly":
            assert settings.fastly_api_token is not None
            auth = {"Fastly-Key": settings.fastly_api_token.get_secret_value()}
            service = f"{settings.fastly_api_url.rstrip('/')}/service/{settings.fastly_service_id}"
            if everything:
                return [httpx.Request("POST", f"{service}/purge_all", headers=auth)]
            return [
                httpx.Request(
                    "POST", f"{service}/purge", headers={**auth, "Surrogate-Key": " ".join(part)}
                )
                for part in _chunks(names, FASTLY_BATCH)
            ]
        case "cloudflare":
            assert settings.cloudflare_api_token is not None
            auth = {"Authorization": f"Bearer {settings.cloudflare_api_token.get_secret_value()}"}
            url = (
                f"{settings.cloudflare_api_url.rstrip('/')}/zones/"
                f"{settings.cloudflare_zone_id}/purge_cache"
            )
            if everything:
                return [httpx.Request("POST", url, headers=auth, json={"purge_everything": True})]
            return [
                httpx.Request("POST", url, headers=auth, json={"tags": part})
                for part in _chunks(names, CLOUDFLARE_BATCH)
            ]
    return []


async def purge(http: httpx.AsyncClient, settings: Settings, names: list[str]) -> Outcome:
    """Purge `names` from every configured target, within WEBHOOK_DEADLINE_SECONDS in all (as
    a webhook: a target that trickles its answers must not hold the worker); a failure
    anywhere retries them all."""
    deadline = settings.webhook_deadline_seconds
    try:
        async with asyncio.timeout(deadline):
            for request in requests(settings, names):
                failed = await _send(http, request)
                if failed is not None:
                    return failed
    except TimeoutError:
        return Outcome.retry(f"The purge took longer than {deadline:g} s.")
    return Outcome.ok()
