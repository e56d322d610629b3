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
# Stored files: immutable, possibly large, and answered with their own validators; buffering
# and hashing them here would cost a copy of each.
UNTOUCHED_PATHS = ("/media/",)


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def etag_for(body: bytes, version: int | None = None) -> str:
    """A strong ETag. With a version (a row's write counter), If-Match on a later write can
    compare the version alone: counters or links that change around the resource do not
    make an editor's precondition fail."""
    digest = body_digest(body)
    return f'"{version}-{digest}"' if version is not None else f'"{digest}"'


def retagged(etag: str, old: bytes, new: bytes) -> str | None:
    """The ETag `etag_for` gives `new` with the version `etag` carries; None when `etag` is
    not one `etag_for` made from `old` (a route's own validator: the body alone cannot say
    what it would become)."""
    digest = body_digest(old)
    if etag == f'"{digest}"':
        return etag_for(new)
    version, _, rest = etag[1:-1].partition("-")
    if rest == digest and version.isdigit() and etag == etag_for(old, int(version)):
        return etag_for(new, int(version))
    return None


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


def _not_modified_since(since: str | None, last_modified: str | None) -> bool:
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
        labels: str | None = None,
    ) -> None:
        """`labels`: the header a response's cache keys go out in (`keys.outgoing`); None:
        they stay inside (the response cache reads them) and are not sent."""
        self.app = app
        self.labels = labels.lower().encode() if labels else None
        self.stale = stale
        self.public = f"public, max-age={public_max_age}" + (f", {stale}" if stale else "")
        self.public_bytes = self.public.encode()
        # For caches that are purged when content changes (Surrogate-Control: Fastly,
        # Varnish; CDN-Cache-Control, RFC 9213: Cloudflare and others): they may keep longer.
        self.surrogate = f"max-age={surrogate_max_age}" if surrogate_max_age else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or scope["path"].startswith(UNTOUCHED_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        # Raw header lists, read in one pass: this runs on every read, cache hits included.
        private = False
        if_none_match = if_modified_since = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                private = True
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"if-modified-since":
                if_modified_since = value.decode("latin-1")
        no_store = scope["path"].startswith(NO_STORE_PATHS)
        start: Message | None = None
        found: dict[bytes, bytes] = {}
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start, found
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", ()))
                found = {name.lower(): value for name, value in raw}
                if _LABEL in found and self.labels != _LABEL:
                    raw = [(k, v) for k, v in raw if k.lower() != _LABEL]
                    if self.labels == _CACHE_TAG:
                        raw.append((_CACHE_TAG, found[_LABEL].replace(b" ", b",")))
                control = found.get(b"cache-control")
                if private or no_store:
                    control = PRIVATE_BYTES if private else NO_STORE_BYTES
                    raw = _replaced(raw, b"cache-control", control)
                elif message["status"] >= 400 and control is None:
                    # An error must not outlive its cause in a shared cache (an article
                    # answered 404 before it was published has no key to purge it by).
                    control = NO_STORE_BYTES
                    raw.append((b"cache-control", control))
                if message["status"] != 200 or no_store or scope["method"] == "HEAD":
                    await send({**message, "headers": raw})
                    return
                if control is None:
                    control = self.public_bytes
                    raw.append((b"cache-control", control))
                elif control.startswith(b"public") and self.stale and b"stale-" not in control:
                    control = control + b", " + self.stale.encode()
                    raw = _replaced(raw, b"cache-control", control)
                found[b"cache-control"] = control
                if (
                    self.surrogate
                    and not private
                    and b"surrogate-key" in found
                    and b"surrogate-control" not in found
                ):
                    raw.append((b"surrogate-control", self.surrogate.encode()))
                    raw.append((b"cdn-cache-control", self.surrogate.encode()))
                start = {**message, "headers": raw}
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._finish(
                start, found, b"".join(chunks), if_none_match, if_modified_since, send
            )

        await self.app(scope, receive, send_wrapper)

    async def _finish(
        self,
        start: Message,
        found: dict[bytes, bytes],
        body: bytes,
        if_none_match: str | None,
        if_modified_since: str | None,
        send: Send,
    ) -> None:
        raw: list[tuple[bytes, bytes]] = start["headers"]
        given = found.get(b"etag")
        etag = given.decode("latin-1") if given else etag_for(body)
        if not given:
            raw.append((b"etag", etag.encode("latin-1")))
        last_modified = found.get(b"last-modified")
        if (if_none_match and none_match(if_none_match, etag)) or (
            not if_none_match
            and _not_modified_since(
                if_modified_since, last_modified.decode("latin-1") if last_modified else None
            )
        ):
            kept = [(k, v) for k, v in raw if k.lower() in _KEPT_ON_304]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})


# What a 304 repeats of the 200 it stands for (RFC 9110 15.4.5), and the cache keys.
_KEPT_ON_304 = frozenset(
    {
        *(b"etag", b"cache-control", b"last-modified", b"vary", b"link", b"x-request-id"),
        *(b"surrogate-key", b"cache-tag", b"surrogate-control", b"cdn-cache-control"),
    }
)
PRIVATE_BYTES = PRIVATE.encode()
_LABEL = b"surrogate-key"
_CACHE_TAG = b"cache-tag"
NO_STORE_BYTES = b"no-store"


def _replaced(
    raw: list[tuple[bytes, bytes]], name: bytes, value: bytes
) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in raw if k.lower() != name] + [(name, value)]
