"""HTTP caching for frontends and CDNs: strong ETags, 304s, Cache-Control.

A pure ASGI middleware: for a GET that answers 200 it adds a strong ETag (a digest of the
body) unless the route set one, answers `If-None-Match` / `If-Modified-Since` with 304, and
sets `Cache-Control`: public with a short max-age for anonymous reads, `private, no-store`
for anything sent with a token.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated

from fastapi import Header
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PreconditionFailed

PRIVATE = "private, no-store"

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match", description="The ETag of your copy; a write from a stale copy gets 412."
    ),
]
NO_STORE_PATHS = ("/healthz", "/readyz", "/metrics")


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def etag_for(body: bytes, version: int | None = None) -> str:
    """A strong ETag. With a version (a row's write counter), If-Match on a later write can
    compare the version alone: counters or links that change around the resource do not
    make an editor's precondition fail."""
    digest = body_digest(body)
    return f'"{version}-{digest}"' if version is not None else f'"{digest}"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def none_match(if_none_match: str, etag: str) -> bool:
    """Whether If-None-Match matches (weak comparison, as RFC 9110 asks for GET)."""
    tags = _tags(if_none_match)
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}


def check_if_match(if_match: str | None, version: int) -> None:
    """Refuse a write made from a stale copy. No header means no precondition."""
    if if_match is None:
        return
    tags = _tags(if_match)
    if "*" in tags:
        return
    for tag in tags:
        value = tag.strip('"')
        if not tag.startswith("W/") and value.split("-", 1)[0] == str(version):
            return
    raise PreconditionFailed(
        "The resource changed since you read it (If-Match does not match its ETag). "
        "Read it again and redo your change."
    )


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _not_modified_since(headers: Headers, last_modified: str | None) -> bool:
    since = headers.get("if-modified-since")
    if not since or not last_modified:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def stale_directives(while_revalidate: int, if_error: int) -> str:
    """RFC 5861: how long a cache may serve a stale copy while it fetches a new one, or while
    the origin answers errors (Varnish and CDNs keep a site up through an outage this way)."""
    parts = []
    if while_revalidate:
        parts.append(f"stale-while-revalidate={while_revalidate}")
    if if_error:
        parts.append(f"stale-if-error={if_error}")
    return ", ".join(parts)


class HttpCacheMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        public_max_age: int = 60,
        stale: str = "",
        surrogate_max_age: int = 0,
    ) -> None:
        self.app = app
        self.stale = stale
        self.public = f"public, max-age={public_max_age}" + (f", {stale}" if stale else "")
        # For caches that are purged when content changes (Surrogate-Control: Fastly,
        # Varnish; CDN-Cache-Control, RFC 9213: Cloudflare and others): they may keep longer.
        self.surrogate = f"max-age={surrogate_max_age}" if surrogate_max_age else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        private = "authorization" in request_headers
        no_store = scope["path"].startswith(NO_STORE_PATHS)
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if private or no_store:
                    headers["Cache-Control"] = PRIVATE if private else "no-store"
                if message["status"] >= 400 and "cache-control" not in headers:
                    # An error must not outlive its cause in a shared cache (an article
                    # answered 404 before it was published has no key to purge it by).
                    headers["Cache-Control"] = "no-store"
                if message["status"] != 200 or no_store or scope["method"] == "HEAD":
                    await send(message)
                    return
                control = headers.get("cache-control")
                if control is None:
                    headers["Cache-Control"] = self.public
                elif control.startswith("public") and self.stale and "stale-" not in control:
                    headers["Cache-Control"] = f"{control}, {self.stale}"
                if (
                    self.surrogate
                    and not private
                    and "surrogate-key" in headers
                    and "surrogate-control" not in headers
                ):
                    headers["Surrogate-Control"] = self.surrogate
                    headers["CDN-Cache-Control"] = self.surrogate
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._finish(start, b"".join(chunks), request_headers, send)

        await self.app(scope, receive, send_wrapper)

    async def _finish(self, start: Message, body: bytes, request: Headers, send: Send) -> None:
        headers = MutableHeaders(scope=start)
        etag = headers.get("etag") or etag_for(body)
        headers["ETag"] = etag
        if_none_match = request.get("if-none-match")
        if (if_none_match and none_match(if_none_match, etag)) or (
            not if_none_match and _not_modified_since(request, headers.get("last-modified"))
        ):
            keep = (
                *("etag", "cache-control", "last-modified", "vary", "link", "x-request-id"),
                *("surrogate-key", "cache-tag", "surrogate-control", "cdn-cache-control"),
            )
            kept = [(k, v) for k, v in start["headers"] if k.decode().lower() in keep]
            kept = [(k, v) for k, v in kept if k.lower() != b"content-length"]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})
