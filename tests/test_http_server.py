"""The HTTP server `python -m app serve` runs, as a real process: idle and slow connections
are closed after the configured times, heads have a size limit, and a worker takes on
HTTP_MAX_CONNECTIONS at most (uvicorn answers 503 beyond it)."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, running_server

pytestmark = pytest.mark.slow

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

Serve = Callable[..., AbstractContextManager[tuple[str, int]]]


@pytest.fixture
def serve(database_url: str) -> Serve:
    """Starts `python -m app serve` with these settings (as environment variables)."""

    def start(**settings: str) -> Iterator[tuple[str, int]]:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **{name.upper(): value for name, value in settings.items()},
        }
        args = ["-m", "app", "serve", "--no-migrate"]
        with running_server(Path(sys.executable), args, env, port) as (base, _):
            yield base, port

    return contextmanager(start)


def connect(port: int, timeout: float = 15) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(timeout)
    return conn


def until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    got = b""
    try:
        while chunk := conn.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def answer(conn: socket.socket) -> bytes:
    """One whole answer to a GET /healthz (its body is short JSON, after the head)."""
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        chunk = conn.recv(4096)
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


class TestSlowClients:
    def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_setting(
        self, serve: Serve
    ) -> None:
        with serve(http_keepalive_seconds="1", http_header_timeout_seconds="30") as (_, port):
            conn = connect(port)
            conn.sendall(HEALTH)
            assert answer(conn).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            assert until_closed(conn) == b""
            idle = time.monotonic() - answered
            conn.close()
        assert 0.8 <= idle < 4, f"closed after {idle:.2f} s idle"

    def test_a_slow_head_is_cut_off_while_others_are_served(self, serve: Serve) -> None:
        with serve(http_header_timeout_seconds="1.5") as (base, port):
            opened = time.monotonic()
            silent = connect(port)
            half = connect(port)
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            trickle = connect(port)
            trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
            with httpx.Client(timeout=5) as client:
                for _ in range(5):
                    assert client.get(f"{base}/healthz").status_code == 200
            served = time.monotonic() - opened
            # A byte every 0.3 s never lets it finish; it does not buy more time either.
            trickle.settimeout(0.3)
            trickled = b""
            for byte in b"X-Slowloris: " + b"a" * 40:
                try:
                    trickle.sendall(bytes([byte]))
                    trickled += trickle.recv(4096)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                if trickled.endswith(b"\r\n\r\n"):
                    break
            trickle.settimeout(5)
            trickled += until_closed(trickle)
            cut = time.monotonic() - opened
            assert until_closed(silent) == b""
            assert until_closed(half).startswith(b"HTTP/1.1 408")
            closed = time.monotonic() - opened
            for conn in (silent, half, trickle):
                conn.close()
        assert served < 1.5, f"others waited {served:.2f} s"
        assert trickled.startswith(b"HTTP/1.1 408"), trickled
        assert 1.3 <= cut < 4.5, f"the trickling client was cut after {cut:.2f} s"
        assert closed < 4.5, f"the silent and half-sent ones were closed after {closed:.2f} s"

    def test_an_endless_header_is_refused(self, serve: Serve) -> None:
        with serve(http_max_header_bytes="4096") as (base, port):
            conn = connect(port)
            with suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000)
            assert until_closed(conn).startswith(b"HTTP/1.1 431")
            conn.close()
            with httpx.Client(timeout=5) as client:
                ok = {"X-Fine": "a" * 3000}
                assert client.get(f"{base}/healthz", headers=ok).status_code == 200


class TestConnectionLimit:
    def test_beyond_the_limit_uvicorn_answers_503_until_idle_connections_go(
        self, serve: Serve
    ) -> None:
        with serve(http_max_connections="5", http_header_timeout_seconds="2") as (base, port):
            idle = [connect(port) for _ in range(20)]
            time.sleep(0.2)  # accepted
            with httpx.Client(timeout=5) as client:
                refused = client.get(f"{base}/healthz")
                for conn in idle:
                    assert until_closed(conn) == b""
                    conn.close()
                served = client.get(f"{base}/healthz")
        assert refused.status_code == 503
        assert served.status_code == 200
