"""No Docker engine runs here, so the container's start command is run as the image would:
in a clean virtual environment installed from the lock file alone, from the project's files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port, running_server

pytestmark = pytest.mark.slow


def dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert match, "the Dockerfile has an exec-form CMD"
    cmd: list[str] = json.loads(match.group(1))
    return cmd


def uv_binary() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "make installs uv into .tools/"
    return found


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert re.search(r"^USER (?!root)\S+", text, re.MULTILINE)
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert "--frozen" in text, "installs from the lock file"
    assert "slim" in text


def test_the_build_context_leaves_out_environments_data_and_tests() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".tools", "var", "tests", ".env"} <= ignored
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    needed = {name for line in copied for name in line.split()}
    assert not needed & ignored, "the Dockerfile copies something the context leaves out"


def test_the_readme_tells_how_to_start_a_container_site() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose run --rm api python -m app create-admin" in readme
    assert "docker compose run --rm api python -m app anonymise-comments" in readme
    assert "TRUSTED_PROXIES" in readme.split("## Container", 1)[1].split("\n## ", 1)[0]


def test_start_command_serves_from_a_clean_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    subprocess.run(
        [uv_binary(), "sync", "--frozen", "--no-dev", "--no-install-project", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    assert not (venv / "bin" / "pytest").exists(), "dev tools stay out of the image"

    port = free_port()
    cmd = dockerfile_cmd()
    assert cmd[0] == "python"
    run_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'news.db'}",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "x" * 48,
    }
    python = venv / "bin" / "python"
    with running_server(python, cmd[1:], run_env, port) as (base, process):
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200, "migrations ran"
        me = httpx.get(f"{base}/api/v1/users/me", timeout=5)
        assert me.status_code == 401, "the users table exists: auth answers, not 503"
    assert process.returncode == 0, "SIGTERM ends the service cleanly"


def test_production_refuses_the_default_secret(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "SECRET_KEY": "",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
    }
    env.pop("SECRET_KEY")
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "app", "serve", "--no-migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    # One clear line naming the setting, not a traceback.
    assert result.stderr.strip().splitlines() == [
        "error: SECRET_KEY must be set to a random value of at least 32 characters when "
        "ENVIRONMENT=production"
    ]


def test_serving_installs_only_the_runtime_dependencies(tmp_path: Path) -> None:
    """`make run` sets up with `install-runtime`: no test or lint tools in that environment."""
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "install-runtime", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    installed = {p.name for p in (venv / "bin").iterdir()}
    assert not installed & {"pytest", "ruff", "mypy", "schemathesis"}
    served = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import app.main, uvicorn, asyncpg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert served.returncode == 0, served.stderr
    # What `make run` would do in a fresh checkout: the runtime install, never the full one.
    fresh = tmp_path / "fresh-venv"
    dry = subprocess.run(
        ["make", "-n", "run", f"VENV={fresh}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    syncs = [line for line in dry.stdout.splitlines() if " sync " in line]
    assert syncs, dry.stdout
    assert all("--no-dev" in line for line in syncs), dry.stdout
