"""The whole API fuzzed from its own OpenAPI document (schemathesis), against a real server:
no 5xx, responses match their documented schemas, status codes and content types are the
documented ones. Write operations run with an admin token. CI runs FUZZ_EXAMPLES examples per
operation (default 10); `make fuzz` runs many more."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.support import ROOT, ServerProcess, free_port, wait_until_healthy

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
# What the contract asks: no 5xx, documented statuses, content types, headers and bodies.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(database_url: str) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "RESPONSE_CACHE": "false",
        "COMMENT_FLOOD_SECONDS": "0",
        "COMMENT_RATE_LIMIT": "",
        "LOGIN_RATE_LIMIT": "10000/minute",
        "LOGIN_RATE_LIMIT_IP": "10000/minute",
    }
    process = ServerProcess(Path(sys.executable), ["-m", "app", "serve", "--no-migrate"], env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
        token = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "create-user",
                "--username",
                f"fuzz{port}",
                "--password",
                "fuzzing-password",
                "--role",
                "admin",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert token.returncode == 0
        issued = subprocess.run(
            [sys.executable, "-m", "app", "create-token", "--username", f"fuzz{port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield base, issued
    finally:
        output = process.stop()
        assert b"Traceback" not in output, output.decode(errors="replace")[-3000:]
        assert b"Warning" not in output, output.decode(errors="replace")[-3000:]


LINKED_OPERATIONS = [
    "createArticle", "readArticle", "updateArticle", "deleteArticle", "postComment",
    "listComments", "readComment", "editComment", "deleteComment",
]  # fmt: skip


def test_every_operation(fuzz_server: tuple[str, str], database_url: str) -> None:
    base, token = fuzz_server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    auth = {"Authorization": f"Bearer {token}"}
    failures: dict[str, str] = {}
    operations = 0
    examples = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            nonlocal examples
            examples += 1
            case.call_and_validate(base_url=base, headers=auth, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
            failures[operation.label] = str(exc)[:2000]
    report = "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert not failures, f"{len(failures)} of {operations} operations failed:\n{report}"
    assert operations >= 50
    assert examples >= operations * min(EXAMPLES, 5)
    # The fuzzed server ran on this variant's database (PostgreSQL in its variant): the
    # admin made for it is stored there.
    assert asyncio.run(_stored_fuzz_writes(database_url)) > 0
    print(f"fuzzed {operations} operations with {examples} examples, 0 failures")


async def _stored_fuzz_writes(database_url: str) -> int:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT count(*) FROM users")) or 0)
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
def test_stateful_runs_follow_the_openapi_links(fuzz_server: tuple[str, str]) -> None:
    """Sequences through the documented links: create an article, read it, change it,
    comment on it, moderate the comment, delete them."""
    base, token = fuzz_server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").include(
        operation_id=LINKED_OPERATIONS
    )
    auth = {"Authorization": f"Bearer {token}"}
    followed: Counter[str] = Counter()

    class Newsroom(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": base, "headers": auth}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            followed[case.operation.label] += 1

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Newsroom.run(
        settings=settings(
            max_examples=max(25, EXAMPLES),
            stateful_step_count=10,
            # A live API answers from its current state, so replaying a scenario cannot
            # reproduce it exactly: generate only, no shrinking replays.
            phases=[Phase.generate],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    # Reached only through links: their ids come from an earlier step's response.
    chain = {
        "POST /api/v1/articles",
        "PATCH /api/v1/articles/{article_id}",
        "POST /api/v1/articles/{article_id}/comments",
    }
    assert chain <= set(followed), (
        f"links not followed: {chain - set(followed)}; saw {sorted(followed)}"
    )
