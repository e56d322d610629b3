"""The HTTP protocol `python -m app serve` runs: uvicorn's httptools protocol with a limit on
how long and how large a request's head (request line and headers) may be.

uvicorn itself waits for a head for ever: its keep-alive timer runs only between two requests
and stops at the first byte of the next, nothing runs before a connection's first request,
and httptools sets no size limit on a header. So a client that opens connections and sends
a header a byte at a time (slowloris), or one endless header, would hold a connection and
its memory as long as it liked. Bodies have their own limit (BODY_TIMEOUT_SECONDS, in
`app.core.middleware`), which starts once the head is in."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.config import get_settings

# Selected by its path (`uvicorn.run(http=...)`), so every worker process imports it anew.
PROTOCOL_PATH = "app.core.server:GuardedHttpToolsProtocol"

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """A request's head must be complete within HTTP_HEADER_TIMEOUT_SECONDS of the connection
    opening (its first request) or of its first byte (a later one on a kept-alive
    connection), and within HTTP_MAX_HEADER_BYTES; else 408 or 431, and the connection is
    closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read here, not handed by uvicorn: its Config knows nothing of our settings.
        settings = get_settings()
        self.head_timeout = settings.http_header_timeout_seconds
        self.max_head_bytes = settings.http_max_header_bytes
        self._head_timer: asyncio.TimerHandle | None = None
        self._reading_head = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._reading_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse(_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect_head()

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def _expect_head(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _head_done(self) -> None:
        self._reading_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        # A connection that sent nothing is closed as an idle one is; a half-sent head hears why.
        self._refuse(_TIMED_OUT if self._head_bytes else b"")

    def _refuse(self, answer: bytes) -> None:
        self._head_done()
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(answer)
        self.transport.close()
