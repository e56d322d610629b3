"""Image uploads: what the renditions cost, and what an upload through the service costs.

    make bench-media                 # python -m bench.run media; bench/results/media.md

- **Renditions**: `app.media.images.process` on a 24-megapixel JPEG (6000×4000, quality 90,
  made here from a fixed seed: a gradient and soft shapes with hard edges, texture and grain,
  so neither pure noise nor flat colour), median of $BENCH_MEDIA_RUNS runs (default 5). The
  reference, measured in the same run and interleaved with it: Pillow decoding that JPEG and
  encoding it once at full size, as the app encodes its full image.
- **Uploads**: the service as in production (`python -m app serve`, one worker, the default
  MEDIA_CONCURRENCY) on a fresh SQLite database and a temporary MEDIA_ROOT; two clients POST
  12-megapixel and then 2-megapixel JPEGs to /api/v1/media, a fixed count each (or until a time
  limit). The references of the same run: an authenticated GET /api/v1/users/me from the same
  two clients (the HTTP, token and database floor), and `process` alone on the same image in
  this process, one at a time (the imaging floor, which the upload adds HTTP, storage and the
  row to).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from app.core.config import Settings
from app.media import images
from bench.run import (
    PYTHON,
    RESULTS,
    ROOT,
    Server,
    busy_warning,
    fmt_table,
    free_port,
    machine,
    plain_table,
    say,
    service_env,
)

RUNS = int(os.environ.get("BENCH_MEDIA_RUNS", "").strip() or 5)
SEED = 20261204
FOCAL = (0.5, 0.5)
CLIENTS = 2
# (label, width, height, uploads, time limit in seconds)
UPLOADS = (("12 MP", 4000, 3000, 10, 40.0), ("2 MP", 1600, 1200, 30, 20.0))
REFERENCE_SECONDS = 3.0
MB = 1_000_000


def photo(width: int, height: int, seed: int = SEED) -> bytes:
    """A photo-like JPEG at quality 90: a sky gradient over soft colour fields, hard-edged
    blocks (buildings), mid-scale texture and fine grain; the same bytes for the same seed."""
    rng = random.Random(seed)

    def field(columns: int, rows: int) -> Image.Image:
        cells = Image.frombytes("RGB", (columns, rows), rng.randbytes(columns * rows * 3))
        return cells.resize((width, height), Image.Resampling.BICUBIC)

    sky = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(field(6, 4), sky, 0.35)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height // 3, height)
        w, h = rng.randrange(width // 40, width // 8), rng.randrange(height // 20, height // 3)
        draw.rectangle((x, y, x + w, y + h), fill=tuple(rng.randrange(40, 220) for _ in "rgb"))
    image = Image.blend(image, field(width // 6, height // 6), 0.18)
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    image = Image.blend(image, grain.convert("RGB"), 0.06)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def options() -> images.Options:
    """The renditions as the service makes them by default."""
    defaults = Settings()
    return images.Options(max_pixels=defaults.media_max_pixels, quality=defaults.media_jpeg_quality)


def decode_encode(data: bytes, quality: int) -> bytes:
    """The reference: one decode and one full-size encode, with the app's full-image settings."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def timed_pair(
    work: Callable[[], object], reference: Callable[[], object], runs: int
) -> tuple[list[float], list[float]]:
    """Both measured in turn, run after run, so a noisy moment touches both alike."""
    measured, referenced = [], []
    work()  # warm-up: the codecs' first use
    for _ in range(runs):
        referenced.append(seconds(reference))
        measured.append(seconds(work))
    return measured, referenced


@dataclass
class Renditions:
    median: float
    reference: float
    files: int
    total_bytes: int
    source_bytes: int
    times: list[float]


def renditions(source: bytes, opts: images.Options, runs: int) -> Renditions:
    made = images.process(source, FOCAL, opts)
    times, refs = timed_pair(
        lambda: images.process(source, FOCAL, opts),
        lambda: decode_encode(source, opts.quality),
        runs,
    )
    return Renditions(
        median=statistics.median(times),
        reference=statistics.median(refs),
        files=len(made.files),
        total_bytes=sum(len(f.data) for f in made.files),
        source_bytes=len(source),
        times=times,
    )


# --- uploads through the service ---------------------------------------------------------


@dataclass
class Load:
    done: int
    errors: int
    elapsed: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def per_second(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0


async def drive(
    send: Callable[[httpx.AsyncClient], Any], expect: int, count: int | None, limit: float
) -> Load:
    """`CLIENTS` clients in a closed loop, together `count` requests (or until `limit`)."""
    started = time.perf_counter()
    issued = 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal issued
        while (count is None or issued < count) and time.perf_counter() - started < limit:
            issued += 1
            begun = time.perf_counter()
            response = await send(c)
            latencies.append(time.perf_counter() - begun)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=120) as c:
        await asyncio.gather(*(client(c) for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    done = statuses.get(expect, 0)
    return Load(done, sum(statuses.values()) - done, elapsed, latencies, statuses)


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"python -m app {' '.join(args[:1])} failed:\n{result.stderr}")
    return result.stdout.strip()


def start(workdir: Path) -> tuple[Server, str, Path]:
    """The service on a new SQLite database, its own media folder and an editor's token."""
    port = free_port()
    env = service_env(f"sqlite+aiosqlite:///{workdir / 'media.db'}", False, port)
    env.pop("REDIS_URL", None)
    media_root = workdir / "media"
    env.update({"WORKERS": "1", "MEDIA_ROOT": str(media_root), "WEBHOOK_WORKER": "false"})
    cli(env, "migrate")
    cli(env, "create-user", "--username", "bench", "--password", secrets.token_hex(12))
    token = cli(env, "create-token", "--username", "bench", "--name", "bench-media")
    server = Server("service-media", [PYTHON, "-m", "app", "serve", "--no-migrate"], env, port)
    return server.ready("/readyz"), token, media_root


@dataclass
class UploadRow:
    label: str
    width: int
    height: int
    source_bytes: int
    load: Load
    alone: float  # `process` on this image, one at a time in this process
    stored_files: int
    stored_bytes: int


def folder_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def uploads(opts: images.Options) -> tuple[Load, list[UploadRow], list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-media-"))
    try:
        server, token, media_root = start(workdir)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            url = server.base + "/api/v1/media"
            me = server.base + "/api/v1/users/me"
            asyncio.run(drive(lambda c: c.get(me, headers=auth), 200, None, 1.0))  # warm-up
            reference = asyncio.run(
                drive(lambda c: c.get(me, headers=auth), 200, None, REFERENCE_SECONDS)
            )
            say(
                f"  reference GET /api/v1/users/me: {reference.per_second:,.0f} req/s "
                f"({CLIENTS} clients, errors {reference.errors})"
            )
            rows = []
            for label, width, height, count, limit in UPLOADS:
                source = photo(width, height, SEED + width)
                alone = statistics.median(
                    seconds(lambda s=source: images.process(s, FOCAL, opts)) for _ in range(3)
                )

                def post(c: httpx.AsyncClient, s: bytes = source) -> Any:
                    form = {"alt_text": "A benchmark photo", "credit": "Bench"}
                    files = {"file": ("photo.jpg", s, "image/jpeg")}
                    return c.post(url, headers=auth, data=form, files=files)

                asyncio.run(drive(post, 201, 1, limit))  # warm-up, not counted
                before = folder_size(media_root)
                load = asyncio.run(drive(post, 201, count, limit))
                after = folder_size(media_root)
                row = UploadRow(
                    label,
                    width,
                    height,
                    len(source),
                    load,
                    alone,
                    after[0] - before[0],
                    after[1] - before[1],
                )
                rows.append(row)
                say("  " + upload_line(row))
            rss = server.rss_mb()
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return reference, rows, rss


def upload_line(row: UploadRow) -> str:
    load = row.load
    latency = statistics.median(load.latencies) if load.latencies else 0.0
    return (
        f"{row.label} ({row.width}×{row.height}, {row.source_bytes / MB:.1f} MB) uploads: "
        f"{load.done} in {load.elapsed:.1f} s = {load.per_second:.2f} uploads/s, "
        f"{load.per_second * row.source_bytes / MB:.1f} MB/s in; median latency "
        f"{latency * 1000:,.0f} ms = {latency / row.alone:.2f}× process() alone "
        f"({row.alone * 1000:,.0f} ms); errors {load.errors}"
    )


# --- the report --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    load_start = busy_warning()
    opts = options()
    say(f"making the 24 MP source (6000×4000, JPEG quality 90, seed {SEED})...")
    source = photo(6000, 4000)
    say(f"renditions of the 24 MP JPEG, median of {RUNS} (quality {opts.quality})...")
    r = renditions(source, opts, RUNS)
    ratio = r.median / r.reference
    lines = [
        f"source: 6000×4000 JPEG q90, {r.source_bytes / MB:.2f} MB",
        f"renditions (images.process), median of {RUNS}: {r.median * 1000:,.0f} ms "
        f"(runs {', '.join(f'{t * 1000:,.0f}' for t in r.times)} ms)",
        f"reference, one Pillow decode + full-size JPEG encode: {r.reference * 1000:,.0f} ms",
        f"renditions cost {ratio:.2f}× one decode+encode",
        f"files made: {r.files}, {r.total_bytes:,} bytes ({r.total_bytes / MB:.2f} MB) in all",
    ]
    for line in lines:
        say("  " + line)

    say(f"uploads through the service (1 worker, SQLite, local storage, {CLIENTS} clients)...")
    reference, rows, rss = uploads(opts)
    headers = [
        "image",
        "uploads",
        "uploads/s",
        "MB/s in",
        "median latency ms",
        "× process() alone",
        "uploads/s × 1/process()",
        "uploads/s × users/me",
        "files, MB stored per upload",
        "errors",
    ]
    table = []
    for row in rows:
        load = row.load
        latency = statistics.median(load.latencies) if load.latencies else 0.0
        stored = load.done or 1
        table.append(
            [
                f"{row.label} ({row.width}×{row.height}, {row.source_bytes / MB:.1f} MB)",
                str(load.done),
                f"{load.per_second:.2f}",
                f"{load.per_second * row.source_bytes / MB:.1f}",
                f"{latency * 1000:,.0f}",
                f"{latency / row.alone:.2f}× ({row.alone * 1000:,.0f} ms)",
                f"{load.per_second * row.alone:.2f}×",
                f"{load.per_second / reference.per_second:.4f}×",
                f"{row.stored_files / stored:.0f}, {row.stored_bytes / stored / MB:.2f}",
                str(load.errors),
            ]
        )
    footer = [
        f"reference GET /api/v1/users/me ({CLIENTS} clients, same server): "
        f"{reference.per_second:,.0f} req/s",
        f"worker RSS after the uploads: {', '.join(f'{x:.0f}' for x in rss)} MB",
    ]
    say()
    for line in lines:
        say(line)
    say()
    say(plain_table(headers, table))
    for line in footer:
        say(line)

    facts = machine()
    facts["load average (1 min), start → end"] = f"{load_start:.1f} → {os.getloadavg()[0]:.1f}"
    facts["Pillow"] = Image.__version__
    md = [
        "# Media: renditions and uploads",
        "",
        f"`make bench-media` on {facts['date']}.",
        "",
        fmt_table(["machine", ""], [[k, v] for k, v in facts.items()]),
        "",
        "## Renditions of a 24-megapixel JPEG",
        "",
        *(f"- {line}" for line in lines),
        "",
        "## Uploads through the service",
        "",
        f"`python -m app serve`, ENVIRONMENT=production, 1 worker, SQLite, local storage; "
        f"{CLIENTS} clients in a closed loop. × process() alone: the median upload latency over "
        "`images.process` on the same image, alone in the benchmark's process; uploads/s × "
        "1/process(): the upload rate over that one-at-a-time rate (at most 2× with two "
        "clients).",
        "",
        fmt_table(headers, table),
        "",
        *(f"- {line}" for line in footer),
        "",
    ]
    output = args.output if getattr(args, "output", None) else RESULTS / "media.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(md))
    say(f"\nwritten: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    failed = sum(row.load.errors for row in rows) + reference.errors
    return 1 if failed else 0
