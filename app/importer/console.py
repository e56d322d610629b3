"""What `python -m app import-wxr` shows: a progress bar while it reads (on stderr, and only
on a terminal), then the summary table on stdout and the problems on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table

from app.importer.service import KINDS, Progress, Report


@contextmanager
def progress(total_bytes: int) -> Iterator[Progress]:
    """A bar over the file's bytes, once per pass; yields the function that moves it."""
    console = Console(stderr=True)
    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task("checking", total=total_bytes)

        def advance(phase: str, done: int) -> None:
            bar.update(task, description=phase, completed=done)

        yield advance


def summary(report: Report, *, dry_run: bool = False) -> Table:
    title = f"WordPress import (WXR {report.version or '?'})"
    if dry_run:
        title += ": dry run, nothing kept"
    table = Table(title=title)
    table.add_column("")
    for column in ("imported", "updated", "unchanged", "skipped", "failed"):
        table.add_column(column, justify="right")
    for kind in KINDS:
        tally = report.tallies[kind]
        table.add_row(
            kind,
            *(
                str(n)
                for n in (
                    tally.imported,
                    tally.updated,
                    tally.unchanged,
                    tally.skipped,
                    tally.failed,
                )
            ),
        )
    return table


def print_report(report: Report, *, dry_run: bool = False) -> None:
    out = Console()
    out.print(summary(report, dry_run=dry_run))
    if report.skipped:
        reasons = ", ".join(f"{count} × {why}" for why, count in sorted(report.skipped.items()))
        out.print(f"skipped: {reasons}", highlight=False, markup=False, soft_wrap=True)
    errors = Console(stderr=True)
    for problem in report.problems:
        errors.print(str(problem), highlight=False, markup=False, soft_wrap=True)
