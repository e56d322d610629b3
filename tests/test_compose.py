"""compose.yaml, read as data (no Docker engine runs here): the services, their health
checks, the start order, and that the API runs the Dockerfile's own start command."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support import ROOT


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_services_are_the_api_postgres_and_redis() -> None:
    services = _compose()["services"]
    assert set(services) == {"api", "postgres", "redis"}
    assert services["api"]["build"] in (".", {"context": "."})
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_databases_have_health_checks() -> None:
    services = _compose()["services"]
    pg = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in pg
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])
    assert any(str(v).split(":")[0] == "pgdata" for v in services["postgres"]["volumes"]), (
        "PostgreSQL keeps its data in a named volume"
    )
    assert "pgdata" in _compose()["volumes"]


def test_api_waits_for_healthy_databases() -> None:
    depends = _compose()["services"]["api"]["depends_on"]
    assert depends == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_api_environment() -> None:
    api = _compose()["services"]["api"]
    env = api["environment"]
    assert env["ENVIRONMENT"] == "production"
    # ${VAR:?message}: compose refuses to start without a secret.
    assert re.fullmatch(r"\$\{SECRET_KEY:\?.+\}", env["SECRET_KEY"])
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert str(env["WORKERS"]) == "2"
    metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"]
    assert any(t.split(":")[0] == metrics_dir for t in api["tmpfs"])


def test_api_runs_the_dockerfiles_start_command() -> None:
    api = _compose()["services"]["api"]
    assert "command" not in api
    assert "entrypoint" not in api
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "app", "serve"]' in dockerfile
