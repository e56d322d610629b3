"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

import orjson
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response
from app.core.logging import request_id_var
from app.core.problems import title_of

access_log = logging.getLogger("app.access")

_REQUEST_ID = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


# 32 hex digits like a UUID: a random part per process and a counter, so that making one
# costs no system call (uuid4 reads the kernel's random source on every request).
_ids: tuple[str, itertools.count[int]] = ("", itertools.count())


def _reseed_request_ids() -> None:
    global _ids
    _ids = (os.urandom(10).hex(), itertools.count(int.from_bytes(os.urandom(6))))


_reseed_request_ids()
os.register_at_fork(after_in_child=_reseed_request_ids)


def new_request_id() -> str:
    prefix, counter = _ids
    return f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


class RequestContextMiddleware:
    """Request id (taken from `X-Request-ID` when sane, made up otherwise), security
    headers on every response, and one access-log line per request."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        headers = dict(SECURITY_HEADERS)
        if hsts:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else new_request_id()
        )
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # One pass over the raw list: this runs on every response, cache hits too.
                raw = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _REQUEST_ID]
                present = {k.lower() for k, _ in raw}
                raw.append((_REQUEST_ID, request_id.encode("latin-1")))
                raw += [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )
            request_id_var.reset(token)


async def send_problem(
    send: Send,
    status: int,
    type_: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem+json answer from a pure ASGI middleware (before any route)."""
    start, body = _problem(status, type_, detail)
    if headers:
        start["headers"] = [*start["headers"], *headers]
    await send(start)
    await send(body)


def _problem(status: int, type_: str, detail: str) -> tuple[Message, Message]:
    title = title_of(type_, status)
    body = orjson.dumps(
        {"type": f"/problems/{type_}", "title": title, "status": status, "detail": detail}
    )
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class RequestGuardMiddleware:
    """Refuses oversized bodies with 413 before reading them whole (by Content-Length, and
    by counting a streamed body), bodies that are not JSON with 415 on JSON routes, and
    bodies that trickle in slower than `body_timeout` with 408, so a slow client holds
    nothing for long."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        limits: list[tuple[re.Pattern[str], int, float | None]],
        form_paths: dict[str, str | None],
        body_timeout: float = 10.0,
    ) -> None:
        """`limits`: (path pattern, largest body, seconds it may take or None for
        `body_timeout`) for routes whose bodies differ from the rest (comments are smaller,
        uploads larger). `form_paths`: the routes that take a form instead of JSON, each
        with what to tell a client that sends them JSON (None: the route tells it, once
        the caller's token has been checked)."""
        self.app = app
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.limits = limits
        self.form_paths = tuple(form_paths)
        self.form_hints = {path: hint for path, hint in form_paths.items() if hint}

    def _limit(self, path: str) -> tuple[int, float]:
        for pattern, limit, timeout in self.limits:
            if pattern.match(path):
                return limit, timeout or self.body_timeout
        return self.max_body, self.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope["query_string"]
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            await send_problem(
                send,
                422,
                "validation-error",
                "NUL characters are not allowed in addresses.",
            )
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        limit, timeout = self._limit(path)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            for message in _problem(
                413,
                "payload-too-large",
                f"Bodies are limited to {limit} bytes.",
            ):
                await send(message)
            return
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        has_body = declared not in (None, "0") or "transfer-encoding" in headers
        is_json = media == "application/json" or media.endswith("+json")
        if has_body and is_json and path in self.form_hints:
            await send_problem(send, 415, "unsupported-media-type", self.form_hints[path])
            return
        if (
            has_body
            and path.startswith("/api/")
            and not path.startswith(self.form_paths)
            and not is_json
        ):
            await send_problem(
                send,
                415,
                "unsupported-media-type",
                "Send the body as application/json.",
            )
            return

        # Read the body here, whole, under a size cap and a deadline, then hand the app a
        # replay of it (a MiB for most routes; uploads up to MEDIA_MAX_BYTES).
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > limit:
                        await send_problem(
                            send,
                            413,
                            "payload-too-large",
                            f"Bodies are limited to {limit} bytes.",
                        )
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_problem(
                send,
                408,
                "request-timeout",
                f"The body must arrive within {timeout:g} seconds.",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered as a problem like every
    other error (its own answer is a bare `text/plain` "Disallowed CORS origin")."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        problem = problem_response(
            400,
            type_="cors-refused",
            detail=f"This cross-origin request is not allowed: {refused}. Allowed origins "
            "are set by CORS_ORIGINS.",
        )
        for name, value in response.headers.items():
            if name.lower().startswith("access-control-") or name.lower() == "vary":
                problem.headers[name] = value
        return problem
