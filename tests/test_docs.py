"""Interactive docs work with no internet: assets come from the package, and a real
browser (Debian's Chromium), with every non-local host unresolvable, renders them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, running_server

pytestmark = pytest.mark.slow


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/auth/token" in schema["paths"]
    login = schema["paths"]["/api/v1/auth/token"]["post"]
    assert "application/problem+json" in login["responses"]["401"]["content"]
    assert "OAuth2PasswordBearer" in schema["components"]["securitySchemes"]


async def test_docs_pages_reference_only_local_assets(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        assert not re.search(r"""(src|href)=["']https?://""", html), page
        for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", html):
            assert (await client.get(asset)).status_code == 200, asset


def test_swagger_ui_renders_offline_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "make test installs Debian's chromium (scripts/ensure-chromium)"
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}",
        "LOG_LEVEL": "WARNING",
    }
    args = ["-m", "app", "serve"]
    with running_server(Path(sys.executable), args, env, port) as (base, _):
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                # Any host but this machine fails to resolve: nothing can come from a CDN.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{base}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout
    assert 'class="swagger-ui' in dom
    assert "opblock" in dom, "operations were rendered from /openapi.json"
    assert "/api/v1/auth/token" in dom
