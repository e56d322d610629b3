"""What the README tells a new user to type works, and its lists name what the code has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.security import SCOPES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = re.compile(r"^(\S*python) -m app (\S+)", re.MULTILINE)


def _command_line_block() -> str:
    section = README.split("### Command line", 1)[1]
    return section.split("```sh", 1)[1].split("```", 1)[0]


def test_every_command_line_example_uses_the_projects_environment() -> None:
    found = COMMAND.findall(_command_line_block())
    assert len(found) >= 9
    assert {python for python, _ in found} == {".venv/bin/python"}


@pytest.mark.parametrize(
    "name", sorted({name for _, name in COMMAND.findall(_command_line_block())} - {"--help"})
)
def test_every_documented_command_exists(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_scopes_list_names_every_scope() -> None:
    listed = README.split("Scopes (", 1)[1].split(")", 1)[0]
    assert set(re.findall(r"`([a-z]+:[a-z]+)`", listed)) == set(SCOPES)
