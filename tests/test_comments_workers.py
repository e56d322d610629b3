"""Flood and duplicate checks hold across two worker processes that share Redis (rate
limits) and the database (duplicates)."""

from __future__ import annotations

import os
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_article, make_user
from tests.support import free_port, running_server

pytestmark = pytest.mark.slow
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex}",
        "COMMENT_MODERATION": "none",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def two_workers(stack: ExitStack, env: dict[str, str]) -> tuple[str, str]:
    bases = []
    for _ in range(2):
        port = free_port()
        args = ["-m", "app", "serve", "--no-migrate"]
        base, _process = stack.enter_context(
            running_server(Path(sys.executable), args, {**env, "PORT": str(port)}, port)
        )
        bases.append(base)
    return bases[0], bases[1]


def comment(email: str, content: str) -> dict[str, str]:
    return {"author_name": "Reader", "author_email": email, "content": content}


async def test_flood_control_spans_processes(
    app: FastAPI, session: AsyncSession, database_url: str
) -> None:
    article = await make_article(session, await make_user(session))
    path = f"/api/v1/articles/{article.id}/comments"
    with ExitStack() as stack:
        first, second = two_workers(stack, worker_env(database_url, COMMENT_RATE_LIMIT=""))
        async with httpx.AsyncClient(timeout=10) as http:
            posted = await http.post(first + path, json=comment("a@example.com", "one"))
            assert posted.status_code == 201, posted.text
            flood = await http.post(second + path, json=comment("a@example.com", "two"))
            assert flood.status_code == 429, "same email, other process, within 15 s"
            assert int(flood.headers["retry-after"]) >= 1
            other = await http.post(second + path, json=comment("b@example.com", "three"))
            assert other.status_code == 201, "another reader at the same address"


async def test_duplicates_and_hourly_limits_span_processes(
    app: FastAPI, session: AsyncSession, database_url: str
) -> None:
    article = await make_article(session, await make_user(session))
    path = f"/api/v1/articles/{article.id}/comments"
    env = worker_env(database_url, COMMENT_FLOOD_SECONDS="0", COMMENT_RATE_LIMIT="3/hour")
    with ExitStack() as stack:
        first, second = two_workers(stack, env)
        async with httpx.AsyncClient(timeout=10) as http:
            made = await http.post(first + path, json=comment("c@example.com", "same"))
            assert made.status_code == 201
            duplicate = await http.post(second + path, json=comment("c@example.com", "same"))
            assert duplicate.status_code == 409, "the same client, through another process"
            other = await http.post(second + path, json=comment("d@example.com", "x"))
            assert other.status_code == 201
            limited = await http.post(first + path, json=comment("e@example.com", "y"))
            # The refused duplicate counted too: every attempt is counted before any check.
            assert limited.status_code == 429, "the hourly count is shared by both processes"
            assert int(limited.headers["retry-after"]) > 60
