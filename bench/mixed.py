"""Reads under writes: what the response cache is worth on a site that is never idle.

    python -m bench.run mixed        # every part below; bench/results/mixed.md

- **Mixed**: wrk reads 1,000 hot article pages (32 connections) while a second client posts
  approved comments at 2, 20 and 100 a second (open loop: on schedule, whatever the answers'
  latency) to random articles among the same 1,000; read-only first, as the reference of
  the same round; with the response cache on and off. 2 workers, PostgreSQL, Redis. With
  the cache on, $BENCH_ROUNDS rounds (3): each starts with a VACUUM of the tables the
  posts write (a server with autovacuum off would carry each round's dead rows into the
  next) and measures read-only and every rate; the ratios are per round, and the table
  gives their median and range (on a shared 2-core machine one run decides nothing).
- **Two instances** on one database, each with its own machine clock (as two machines): a
  comment posted through one, then the other is read every 2 ms until it shows it; 100
  times. The delay is counted from the write's answer.
- **Flood**: the same reads while one connection loops anonymous writes that are refused
  (a trailing-slash 307, a 401, a 422 comment).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench.run import (
    DURATION,
    PYTHON,
    RESULTS,
    WORKERS,
    Fixtures,
    Measure,
    Server,
    Wrk,
    busy_warning,
    ensure_data,
    ensure_wrk,
    env_number,
    fmt_table,
    free_port,
    load_fixtures,
    lua_script,
    machine,
    pg_connect,
    plain_table,
    remove_posted_comments,
    say,
    service_env,
)

RATES = (2, 20, 100)
ROUNDS = max(1, int(env_number("BENCH_ROUNDS", 3)))
PROPAGATION_WRITES = 100
API = "/api/v1/articles"


def _service(database_url: str, cache: bool, clock: Path, workers: int = WORKERS) -> Server:
    port = free_port()
    env = service_env(database_url, cache, port)
    env.update(
        {
            "WORKERS": str(workers),
            "COMMENT_MODERATION": "none",  # every comment approved: each one invalidates
            "PUBLIC_BASE_URL": "https://news.example",
            "CACHE_GENERATION_FILE": str(clock),
        }
    )
    name = f"service-{'cache' if cache else 'nocache'}"
    return Server(name, [PYTHON, "-m", "app", "serve"], env, port).ready("/readyz")


def _comment(n: int) -> dict[str, str]:
    who = uuid.uuid4().hex[:12]
    return {
        "author_name": f"Reader {who}",
        "author_email": f"{who}@example.com",
        "content": f"Mixed-load comment {n} {who}: the council vote was closer than reported.",
    }


@dataclass
class Writes:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 201)


class _Poster:
    """Keep-alive HTTP/1.1 connections that POST prepared requests, one at a time each.
    Hand-written on asyncio streams: an HTTP client library costs the machine more CPU per
    request than the service's own comment POST, and it shares the cores with the service."""

    def __init__(self, base: str, size: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.size = size
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            return await asyncio.open_connection(*self.address)
        return await self.idle.get()

    async def post(self, path: str, body: bytes) -> int:
        reader, writer = await self._connection()
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            self.opened -= 1
            return 0
        self.idle.put_nowait((reader, writer))
        return status

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


async def _post_at_rate(
    base: str, ids: list[int], rate: float, stop: asyncio.Event, writes: Writes
) -> None:
    """Open loop: the k-th post leaves at start + k / rate, whatever earlier answers took."""
    rng = random.Random(rate)
    poster = _Poster(base, size=64)
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        body = orjson.dumps(_comment(n))
        started = time.perf_counter()
        status = await poster.post(f"{API}/{rng.choice(ids)}/comments", body)
        writes.latencies.append((time.perf_counter() - started) * 1000)
        writes.statuses[status] = writes.statuses.get(status, 0) + 1

    start, n = time.perf_counter(), 0
    while not stop.is_set():
        wait = start + n / rate - time.perf_counter()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                break
            except TimeoutError:
                pass
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.gather(*pending)
    poster.close()


def _reads_while_posting(
    wrk: Wrk, base: str, script: str, ids: list[int], rate: float
) -> tuple[Measure, Writes]:
    writes = Writes()
    if rate <= 0:
        return wrk.measure(base, script), writes

    async def run() -> Measure:
        stop = asyncio.Event()
        poster = asyncio.create_task(_post_at_rate(base, ids, rate, stop, writes))
        try:
            return await asyncio.to_thread(wrk.measure, base, script)
        finally:
            stop.set()
            await poster

    return asyncio.run(run()), writes


@dataclass
class MixedRow:
    """One rate in one mode: a measure per round, each with its round's read-only figure."""

    mode: str
    rate: float
    rounds: list[tuple[Measure, Writes, float]] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [reads.rps / alone if alone else 0.0 for reads, _, alone in self.rounds]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def median(self) -> Measure:
        """The round whose ratio is the median (the lower middle one of an even count)."""
        ranked = sorted(self.rounds, key=lambda r: r[0].rps / r[2] if r[2] else 0.0)
        return ranked[(len(ranked) - 1) // 2][0]

    @property
    def read_errors(self) -> int:
        return sum(reads.errors for reads, _, _ in self.rounds)

    @property
    def posts(self) -> int:
        return sum(sum(writes.statuses.values()) for _, writes, _ in self.rounds)

    @property
    def post_errors(self) -> int:
        return sum(writes.errors for _, writes, _ in self.rounds)

    @property
    def latencies(self) -> list[float]:
        return [ms for _, writes, _ in self.rounds for ms in writes.latencies]


async def vacuum(database_url: str) -> None:
    """What the posts wrote, tidied as autovacuum would: dead article versions (each count
    update leaves one) otherwise slow the next round's reads."""
    conn = await pg_connect(database_url)
    try:
        await conn.execute("VACUUM (ANALYZE) articles, comments")
    finally:
        await conn.close()


def mixed(wrk: Wrk, database_url: str, fx: Fixtures, clocks: Path) -> list[MixedRow]:
    script = lua_script([f"{API}/{i}" for i in fx.open_ids])
    rows: list[MixedRow] = []
    for cache in (True, False):
        mode = "cache on" if cache else "cache off"
        mode_rows = {rate: MixedRow(mode, rate) for rate in (0, *RATES)}
        rows += mode_rows.values()
        server = _service(database_url, cache, clocks / f"mixed-{mode}")
        try:
            for round_ in range(1, (ROUNDS if cache else 1) + 1):
                asyncio.run(vacuum(database_url))
                alone = 0.0
                for rate in (0, *RATES):
                    reads, writes = _reads_while_posting(
                        wrk, server.base, script, fx.open_ids, rate
                    )
                    alone = alone or reads.rps
                    mode_rows[rate].rounds.append((reads, writes, alone))
                    say(
                        f"  {mode}, round {round_}, {rate:>3} comments/s: {reads.rps:>8,.0f} "
                        f"reads/s ({reads.rps / alone if alone else 0:.2f}×) p50 "
                        f"{reads.p50:6.2f} ms p99 {reads.p99:7.2f} ms, read errors "
                        f"{reads.errors}, posts {sum(writes.statuses.values())} "
                        f"(not 201: {writes.errors})"
                    )
        finally:
            server.stop()
    return rows


async def _propagation(first: str, second: str, ids: list[int]) -> list[float]:
    rng = random.Random(7)
    delays: list[float] = []
    async with (
        httpx.AsyncClient(base_url=first, timeout=10) as writer,
        httpx.AsyncClient(base_url=second, timeout=10) as reader,
    ):
        for n in range(PROPAGATION_WRITES):
            article = rng.choice(ids)
            path = f"{API}/{article}"
            for _ in range(3):  # into the second instance's cache
                seen = await reader.get(path)
            count = seen.json()["comment_count"]
            posted = await writer.post(f"{path}/comments", json=_comment(n))
            assert posted.status_code == 201, posted.text
            answered = time.perf_counter()
            while True:
                shown = await reader.get(path)
                if shown.json()["comment_count"] > count:
                    delays.append((time.perf_counter() - answered) * 1000)
                    break
                if time.perf_counter() - answered > 10:
                    delays.append(float("inf"))
                    break
                await asyncio.sleep(0.002)
    return delays


def two_instances(database_url: str, fx: Fixtures, clocks: Path) -> list[float]:
    # One worker each: two instances of two workers would be eight processes on the cores.
    first = _service(database_url, True, clocks / "instance-a", workers=1)
    try:
        second = _service(database_url, True, clocks / "instance-b", workers=1)
        try:
            return asyncio.run(_propagation(first.base, second.base, fx.open_ids))
        finally:
            second.stop()
    finally:
        first.stop()


def flood_script(article_id: int) -> str:
    """Anonymous writes, all refused: 307 (trailing slash), 401 (no token), 422 (bad email)."""
    json_type = "{['Content-Type'] = 'application/json'}"
    article = '\'{"title": "x"}\''
    bad = '\'{"author_name": "X", "author_email": "nope", "content": "spam"}\''
    return (
        "\n".join(
            [
                "local n = 0",
                "function request()",
                "  n = n + 1",
                "  local k = n % 3",
                "  if k == 0 then",
                f"    return wrk.format('POST', '{API}/', {json_type}, {article})",
                "  elseif k == 1 then",
                f"    return wrk.format('POST', '{API}', {json_type}, {article})",
                "  end",
                f"  return wrk.format('POST', '{API}/{article_id}/comments', {json_type}, {bad})",
                "end",
            ]
        )
        + "\n"
    )


def flood(
    wrk: Wrk, database_url: str, fx: Fixtures, clocks: Path
) -> list[tuple[Measure, Measure, int]]:
    """Per round: (reads alone, reads during the flood, refused writes sent)."""
    script = lua_script([f"{API}/{i}" for i in fx.open_ids])
    server = _service(database_url, True, clocks / "flood")
    flood_file = Path(tempfile.mkstemp(suffix=".lua")[1])
    flood_file.write_text(flood_script(fx.open_ids[0]))
    rounds = []
    try:
        for _ in range(ROUNDS):
            alone = wrk.measure(server.base, script)
            command = [wrk.binary, "-t1", "-c1", f"-d{DURATION + 8}s", "-s", str(flood_file)]
            flooding = subprocess.Popen(
                [*command, server.base],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                during = wrk.measure(server.base, script)
            finally:
                output, _ = flooding.communicate(timeout=120)
            sent = re.search(r"(\d+) requests in", output)
            rounds.append((alone, during, int(sent.group(1)) if sent else 0))
            say(f"  flood round: {during.rps / alone.rps if alone.rps else 0:.2f}×")
        return rounds
    finally:
        flood_file.unlink()
        server.stop()


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> int:
    database_url = args.database_url
    wrk = Wrk(ensure_wrk())
    ensure_data(database_url, 10_000, 100_000)
    load_start = busy_warning()
    fx = asyncio.run(load_fixtures(database_url))
    say(f"{fx.articles:,} articles, {fx.comments:,} comments; {len(fx.open_ids)} hot pages")
    parts = set(args.parts.split(","))
    clocks = Path(tempfile.mkdtemp(prefix="bench-clocks-"))
    md: list[str] = []
    verdicts: list[tuple[str, bool]] = []
    try:
        if "mixed" in parts:
            say("reads of 1,000 article pages while comments arrive...")
            rows = mixed(wrk, database_url, fx, clocks)
            table = []
            for row in rows:
                ratio, shown = row.ratio, row.median
                target = ""
                if row.mode == "cache on" and row.rate in (20, 100):
                    wanted = 0.8 if row.rate == 20 else 0.5
                    ok = ratio >= wanted and row.read_errors == 0 and row.post_errors == 0
                    target = f"≥ {wanted}× and 0 errors: {'PASS' if ok else 'MISS'}"
                    verdicts.append((f"mixed {row.rate}/s", ok))
                lat = row.latencies
                table.append(
                    [
                        row.mode,
                        str(row.rate),
                        str(len(row.rounds)),
                        f"{shown.rps:,.0f}",
                        f"{ratio:.2f}×",
                        f"{min(row.ratios):.2f}–{max(row.ratios):.2f}",
                        f"{shown.p50:.2f} / {shown.p99:.2f}",
                        str(row.read_errors),
                        str(row.posts),
                        str(row.post_errors),
                        f"{_pct(lat, 50):.1f} / {_pct(lat, 99):.1f}" if lat else "–",
                        target,
                    ]
                )
            headers = [
                "cache",
                "comments/s",
                "rounds",
                "reads/s (median round)",
                "× read-only (median)",
                "range",
                "read p50 / p99 ms",
                "read errors",
                "posts",
                "posts not 201",
                "post p50 / p99 ms",
                "target",
            ]
            say(plain_table(headers, table))
            md += ["## Reads while comments arrive", "", fmt_table(headers, table), ""]
        if "instances" in parts:
            say("two instances: a comment through one, until the other shows it...")
            delays = two_instances(database_url, fx, clocks)
            ok = _pct(delays, 99) < 1000
            verdicts.append(("two instances p99 < 1 s", ok))
            line = (
                f"{len(delays)} writes: p50 {_pct(delays, 50):.1f} ms, p99 "
                f"{_pct(delays, 99):.1f} ms, max {max(delays):.1f} ms, mean "
                f"{statistics.fmean(delays):.1f} ms (p99 < 1 s: {'PASS' if ok else 'MISS'})"
            )
            say("  " + line)
            md += ["## Two instances on one database", "", line, ""]
        if "flood" in parts:
            say("reads during a flood of refused anonymous writes...")
            rounds = flood(wrk, database_url, fx, clocks)
            ratios = [d.rps / a.rps if a.rps else 0.0 for a, d, _ in rounds]
            ratio = statistics.median(ratios)
            alone, during, sent = sorted(rounds, key=lambda r: r[1].rps / (r[0].rps or 1))[
                (len(rounds) - 1) // 2
            ]
            errors = sum(d.errors for _, d, _ in rounds)
            ok = ratio >= 0.8 and errors == 0
            verdicts.append(("flood ≥ 0.8×", ok))
            line = (
                f"{len(rounds)} rounds, the median one: reads alone {alone.rps:,.0f}/s; during "
                f"the flood ({sent:,} refused writes on one connection) {during.rps:,.0f}/s = "
                f"{ratio:.2f}× (range {min(ratios):.2f}–{max(ratios):.2f}; ≥ 0.8×: "
                f"{'PASS' if ok else 'MISS'}), read errors {errors}"
            )
            say("  " + line)
            md += ["## A flood of refused writes", "", line, ""]
    finally:
        removed = asyncio.run(remove_posted_comments(database_url, fx.max_comment_id))
        say(f"removed the {removed:,} comments posted")
    facts = machine()
    facts["load average (1 min), start → end"] = f"{load_start:.1f} → {os.getloadavg()[0]:.1f}"
    facts["PostgreSQL"] = fx.pg_version
    header = [
        "# Mixed load: reads while the site is written to",
        "",
        f"`python -m bench.run mixed` on {facts['date']}.",
        "",
        fmt_table(["machine", ""], [[k, v] for k, v in facts.items()]),
        "",
        f"Data: {fx.articles:,} articles, {fx.comments:,} comments. Service: `python -m app "
        f"serve`, ENVIRONMENT=production, {WORKERS} workers, COMMENT_MODERATION=none (every "
        "comment approved, so every one invalidates), flood limits lifted, Redis when it "
        "answers. Reads: wrk, 2 threads, 32 connections over 1,000 article pages.",
        "",
    ]
    summary = [f"- {name}: {'PASS' if ok else 'MISS'}" for name, ok in verdicts]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mixed.md").write_text("\n".join([*header, *md, *summary, ""]))
    say(f"written: {(RESULTS / 'mixed.md')}")
    return 0
