"""The command-line interface, run as an operator would: `python -m app ...`."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiToken
from app.core.security import hash_token
from tests.factories import bearer
from tests.support import ROOT


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_create_admin_then_token_then_revoke(
    database_url: str, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    made = cli(
        database_url, "create-admin", "--username", "root-admin", "--password", "s3cret-pass-word"
    )
    assert made.returncode == 0, made.stderr
    assert "s3cret-pass-word" not in made.stdout

    issued = cli(
        database_url,
        "create-token",
        "--username",
        "root-admin",
        "--scope",
        "comments:moderate",
        "--expires-in-days",
        "30",
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n", "the token alone on stdout, for $(...) in scripts"
    assert token.startswith("nws_")

    stored = await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    assert stored is not None
    assert stored.scopes == ["comments:moderate"]
    assert stored.expires_at is not None

    me = await client.get("/api/v1/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["scopes"] == ["comments:moderate"]

    revoked = cli(database_url, "revoke-token", token)
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 401


async def test_cli_errors_are_clear_and_exit_non_zero(database_url: str) -> None:
    weak = cli(database_url, "create-admin", "--username", "x1", "--password", "short")
    assert weak.returncode == 1
    assert "password" in weak.stderr
    nobody = cli(database_url, "create-token", "--username", "ghost")
    assert nobody.returncode == 1
    assert "ghost" in nobody.stderr
    bad_scope = cli(database_url, "create-token", "--username", "ghost", "--scope", "root")
    assert bad_scope.returncode == 1
    assert "unknown scope" in bad_scope.stderr
    missing = cli(database_url, "revoke-token", "999999")
    assert missing.returncode == 1
