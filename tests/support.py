"""Helpers shared by tests that are not fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from alembic import command
from alembic.config import Config
from fastapi import FastAPI, routing
from pydantic import SecretStr

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    return config


def alembic_upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def alembic_downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{base} did not become healthy")


class ServerProcess:
    """The service as a child process. Its output goes to a file, not a pipe: a pipe nobody
    reads fills up and then blocks the server mid-request."""

    def __init__(self, python: Path, args: list[str], env: dict[str, str]) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(python), *args], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def output_so_far(self) -> bytes:
        # pread: the child shares this file's offset, which must not move under it.
        return os.pread(self._log.fileno(), 1 << 20, 0)

    def stop(self, timeout: float = 30) -> bytes:
        """SIGTERM (as a container runtime does), wait, and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        self._log.seek(0)
        output = self._log.read()
        self._log.close()
        return output


@contextmanager
def running_server(
    python: Path, args: list[str], env: dict[str, str], port: int
) -> Iterator[tuple[str, ServerProcess]]:
    """Start the service, wait until it is healthy; stop it on the way out."""
    server = ServerProcess(python, args, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
        yield base, server
    finally:
        server.stop()


PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status"} <= body.keys()
    assert body["status"] == status
    text = response.text.lower()
    assert "traceback" not in text
    assert "select " not in text
    return body


def app_routes(app: FastAPI) -> list[tuple[str, set[str]]]:
    """Every (path, methods) the app serves, routers included (FastAPI nests them)."""
    found = []
    for context in routing.iter_route_contexts(app.routes):
        if isinstance(context.original_route, routing.APIRoute):
            found.append((context.path, set(context.methods or ())))
    return found


class TcpProxy:
    """A TCP proxy in front of PostgreSQL that a test can cut and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.cut_count = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as a dead database would."""
        assert self.server is not None
        self.server.close()
        for link in list(self.links):
            link.transport.abort()
        self.links.clear()
        self.cut_count += 1

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()


@dataclass
class Inbox:
    """What the SMTP server received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


async def until(check: object, what: str, within: float = 20) -> None:
    """Wait until `check` (a value, or a function, sync or async) holds; fail after
    `within` seconds, saying `what` never happened."""
    deadline = time.monotonic() + within
    while True:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


# --- an S3-compatible server (moto) --------------------------------------------------------

BUCKET = "newsroom-media"
MOTO_STARTUP_SECONDS = 20
PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        }
    ],
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str


def _start_moto(port: int, log: Path) -> subprocess.Popen[bytes] | None:
    """moto on `port`, once it answers; None if it exited first (another process took the
    port between choosing it and binding it)."""
    moto = Path(sys.executable).with_name("moto_server")
    # A file, not a pipe: nobody reads the request log, and a full pipe would stall the server.
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + MOTO_STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1).raise_for_status()
        except httpx.HTTPError:
            time.sleep(0.1)
        else:
            return process
    process.kill()
    process.wait()
    pytest.fail(
        f"moto_server did not answer on port {port} within {MOTO_STARTUP_SECONDS} s:\n"
        f"{log.read_text(errors='replace')[-2000:]}"
    )


@contextmanager
def moto_s3(log_dir: Path) -> Iterator[S3Server]:
    """moto's S3 server with a publicly readable bucket, stopped on the way out. For a
    session-scoped fixture of each module that needs it."""
    log = log_dir / "server.log"
    for _ in range(3):
        port = free_port()
        process = _start_moto(port, log)
        if process is not None:
            break
    else:
        pytest.fail(f"moto_server could not start:\n{log.read_text(errors='replace')[-2000:]}")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        httpx.put(f"{endpoint}/{BUCKET}", timeout=5).raise_for_status()
        # Readers fetch files from the bucket unsigned, as from a public bucket or behind a CDN.
        httpx.put(
            f"{endpoint}/{BUCKET}?policy",
            content=json.dumps(PUBLIC_READ),
            headers={"Content-Type": "application/json"},
            timeout=5,
        ).raise_for_status()
        yield S3Server(endpoint, BUCKET)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_values(server: S3Server) -> dict[str, Any]:
    """The settings that put media in the server's bucket."""
    return {
        "media_storage": "s3",
        "media_s3_bucket": server.bucket,
        "media_s3_endpoint_url": server.endpoint,
        "media_s3_access_key_id": "testing",
        "media_s3_secret_access_key": SecretStr("testing"),
    }


def s3_settings(server: S3Server, **overrides: Any) -> Settings:
    return Settings(**(s3_values(server) | overrides))
