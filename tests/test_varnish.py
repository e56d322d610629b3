"""A real Varnish (Debian's, with varnish-modules' xkey) running the shipped VCL in front
of two API instances on one PostgreSQL database: hits served by Varnish, a write purging
exactly the pages it changed, and stale pages served while the database is down."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, make_url, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.models import Delivery, DeliveryKind
from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import ROOT, ServerProcess, TcpProxy, free_port, until, wait_until_healthy

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]

VCL_DIR = ROOT / "deploy" / "varnish"
MAX_AGE = 2  # seconds a page is fresh, so the test can see it go stale


def _backends(ports: list[int]) -> str:
    """The deployment's part of the VCL: these instances, probed quickly."""
    lines = [
        "import directors;",
        'probe newsroom_ready { .url = "/readyz"; .interval = 0.3s; .timeout = 1s;',
        "    .window = 3; .threshold = 2; .initial = 2; }",
        'acl newsroom_purgers { "127.0.0.1"; }',
    ]
    for n, port in enumerate(ports):
        lines.append(
            f'backend api{n} {{ .host = "127.0.0.1"; .port = "{port}"; .probe = newsroom_ready; }}'
        )
    lines.append("sub vcl_init { new newsroom = directors.round_robin();")
    lines += [f"    newsroom.add_backend(api{n});" for n in range(len(ports))]
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def varnish_port() -> int:
    return free_port()


@pytest.fixture
def varnish(tmp_path: Path, varnish_port: int) -> Iterator[tuple[str, list[int]]]:
    """Varnish on `varnish_port` in front of two backend ports the test fills in."""
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    assert Path(varnishd).exists(), "varnishd is missing: make test installs it"
    ports = [free_port(), free_port()]
    (tmp_path / "backends.vcl").write_text(_backends(ports))
    work = Path(tempfile.mkdtemp(prefix="varnish-"))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            varnishd,
            *("-F", "-j", "none", "-n", str(work)),
            *("-a", f"127.0.0.1:{varnish_port}"),
            *("-f", str(VCL_DIR / "default.vcl")),
            *("-p", f"vcl_path={tmp_path}:{VCL_DIR}"),
            *("-s", "malloc,32m", "-T", "127.0.0.1:0"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.request("PURGE", f"http://127.0.0.1:{varnish_port}/", timeout=1)
                break
            except httpx.TransportError:
                log.seek(0)
                assert process.poll() is None, log.read().decode()
                assert time.monotonic() < deadline, "varnish did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{varnish_port}", ports
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
async def proxy(backend: str) -> AsyncIterator[TcpProxy]:
    from tests.conftest import PG_URL

    target = make_url(PG_URL)
    running = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await running.start()
    yield running
    await running.stop()


def _instance(database_url: str, port: int, varnish: str, clock: Path) -> ServerProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        "RESPONSE_CACHE": "true",
        "CACHE_GENERATION_FILE": str(clock),
        "CDN_PURGE": "varnish",
        "CDN_PURGE_URLS": varnish,
        "PUBLIC_BASE_URL": "https://news.example",
        "PUBLIC_MAX_AGE": str(MAX_AGE),
        "WEBHOOK_WORKER": "true",
        "DB_CONNECT_TIMEOUT": "1",
        "DB_POOL_TIMEOUT": "2",
    }
    return ServerProcess(Path(sys.executable), ["-m", "app", "serve", "--no-migrate"], env)


async def test_varnish_in_front_of_two_instances(
    app: FastAPI,
    session: AsyncSession,
    database_url: str,
    proxy: TcpProxy,
    varnish: tuple[str, list[int]],
    tmp_path: Path,
) -> None:
    front, ports = varnish
    via_proxy = make_url(database_url).set(port=proxy.port).render_as_string(False)
    editor = await make_user(session, role=Role.editor)
    token = await make_token(session, editor)
    changed = await make_article(session, editor, title="Before")
    untouched = await make_article(session, editor, title="Untouched")
    instances = [
        _instance(via_proxy, port, front, tmp_path / f"clock-{n}") for n, port in enumerate(ports)
    ]
    try:
        for port in ports:
            await asyncio.to_thread(wait_until_healthy, f"http://127.0.0.1:{port}")

        async def purges_sent() -> bool:
            count = await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.kind == DeliveryKind.purge)
            )
            await session.commit()
            return count == 0

        async with httpx.AsyncClient(base_url=front, timeout=10) as client:

            async def varnish_sees_them() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await until(varnish_sees_them, "Varnish's probes find the instances")
            pages = {
                "changed": f"/api/v1/articles/{changed.id}",
                "untouched": f"/api/v1/articles/{untouched.id}",
                "list": "/api/v1/articles?per_page=5",
            }
            for path in pages.values():
                first = await client.get(path)
                assert first.status_code == 200, first.text
                again = await client.get(path)
                assert again.headers["x-cache"] == "HIT", f"{path} not served by Varnish"
                assert len(again.headers["x-varnish"].split()) == 2

            edited = await client.patch(
                pages["changed"], json={"title": "After"}, headers=bearer(token)
            )
            assert edited.status_code == 200
            await until(purges_sent, "the purge is sent")
            fresh = await client.get(pages["changed"])
            assert fresh.headers["x-cache"] == "MISS"
            assert fresh.json()["title"] == "After"
            listed = await client.get(pages["list"])
            assert listed.headers["x-cache"] == "MISS"
            assert "After" in [i["title"] for i in listed.json()["items"]]
            kept = await client.get(pages["untouched"])
            assert kept.headers["x-cache"] == "HIT", "a page the edit did not change was purged"

            # The database goes away: both instances answer 503, Varnish serves stale pages.
            await asyncio.sleep(MAX_AGE + 0.5)
            await proxy.cut()
            async with httpx.AsyncClient(timeout=5) as direct:

                async def both_unready() -> bool:
                    codes = [
                        (await direct.get(f"http://127.0.0.1:{p}/readyz")).status_code
                        for p in ports
                    ]
                    return codes == [503, 503]

                await until(both_unready, "both instances lose the database")
                await asyncio.sleep(1.5)  # Varnish's probes count them sick
                assert (
                    await direct.get(f"http://127.0.0.1:{ports[0]}{pages['untouched']}")
                ).status_code == 503
            stale = await client.get(pages["untouched"])
            assert stale.status_code == 200
            assert stale.json()["title"] == "Untouched"
            assert int(stale.headers["age"]) > MAX_AGE
            await proxy.restore()
            for port in ports:
                await asyncio.to_thread(wait_until_healthy, f"http://127.0.0.1:{port}")
    finally:
        for instance in instances:
            # In a thread: this loop runs the database proxy the instance shuts down through.
            await asyncio.to_thread(instance.stop)
