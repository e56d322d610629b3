"""The benchmark: the service as in production, driven by wrk, next to a bare FastAPI app.

    make bench                      # python -m bench.run
    make bench-growth               # python -m bench.run growth --sizes 10000,100000
    make bench-large                # ... --sizes 10000,100000,1000000
    make bench-mixed                # python -m bench.run mixed (see bench/mixed.py)
    make bench-media                # python -m bench.run media (see bench/media.py)

`make bench` uses the PostgreSQL database in $BENCH_DATABASE_URL (else $DATABASE_URL, else
postgresql+asyncpg://postgres@127.0.0.1:5432/bench), filled by `make bench-data` (or, when it
is empty, filled here with the defaults). It measures the reference app and the raw ASGI
ceiling, then serves the API with `python -m app serve` (ENVIRONMENT=production, $BENCH_WORKERS
workers, default 2) twice, with the response cache on ("warm") and off ("cold"), and runs
every scenario in each: a warm-up of $BENCH_WARMUP-second rounds (default 3; repeated while
throughput still climbs), then wrk with 32 connections and 2 threads for $BENCH_DURATION
seconds (default 10). The table goes to stdout and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import vocabulary as vocab
from bench.generate import DEFAULT_DATABASE_URL, _pg_params, ensure_pg_database, safe_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
STATE = Path(__file__).resolve().parent / ".state.json"
PYTHON = sys.executable

CONNECTIONS = 32
THREADS = 2
SAMPLE_IDS = 1000
DEEP_PAGE = 5000
PER_PAGE = 10
GROWTH_COMMENTS_PER_ARTICLE = 10
GROWTH_MAX_COMMENTS = 2_000_000
PUBLIC = "status IN ('published', 'scheduled') AND published_at <= now()"


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


DURATION = int(env_number("BENCH_DURATION", 10))
WARMUP = int(env_number("BENCH_WARMUP", 3))
WORKERS = int(env_number("BENCH_WORKERS", 2))


def say(message: str = "") -> None:
    print(message, flush=True)


# --- tools -----------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install it (Debian: apt-get install wrk), or run as root")
    say("installing wrk (apt-get install wrk)...")
    quiet = {
        "stdout": subprocess.DEVNULL,
        "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    }
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, **quiet)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def http(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> Reply:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError):
        return Reply(0, {}, b"")


# --- servers ---------------------------------------------------------------------------


class Server:
    """A process group we started; stopped with SIGTERM (then SIGKILL) to that group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if http(self.base + path, timeout=2).status == 200:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer {path} in {timeout:.0f} s:\n{self.tail()}")

    def ready(self, path: str) -> Server:
        """Wait until `path` answers 200; stop the server if it never does."""
        try:
            self.wait_ready(path)
        except BaseException:
            self.stop()
            raise
        return self

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def workers(self) -> list[int]:
        """The worker processes: children of the server that multiprocessing spawned (or the
        server itself when it runs a single worker in-process)."""
        children: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                children += [int(p) for p in task.read_text().split()]
        spawned = []
        for pid in children:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    spawned.append(pid)
        return spawned or [self.proc.pid]

    def rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Workers left behind by a crashed supervisor are in the same group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def uvicorn_server(name: str, target: str, workers: int) -> Server:
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return Server(name, command, {**os.environ}, port).ready("/article")


def service_env(database_url: str, response_cache: bool, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(WORKERS),
        "LOG_LEVEL": "WARNING",
        "RESPONSE_CACHE": "true" if response_cache else "false",
        # As a deployment sets it: without it, wrk on loopback counts as a trusted proxy, and
        # pages whose links are built from its Host header are never stored.
        "PUBLIC_BASE_URL": "https://news.example",
        # Readers' comment limits lifted: the POST scenario is one client posting fast.
        "COMMENT_FLOOD_SECONDS": "0",
        "COMMENT_RATE_LIMIT": "",
    }
    if redis_answers():
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    else:
        env.pop("REDIS_URL", None)
    return env


def start_service(database_url: str, mode: str) -> Server:
    port = free_port()
    env = service_env(database_url, mode == "warm", port)
    return Server(f"service-{mode}", [PYTHON, "-m", "app", "serve"], env, port).ready("/readyz")


# --- wrk -------------------------------------------------------------------------------


def _lua_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # also a valid Lua string literal


def lua_script(
    paths: list[str],
    *,
    headers: list[dict[str, str]] | None = None,
    post: bool = False,
    expect: int | None = None,
) -> str:
    """A wrk script cycling through `paths` (each thread from its own offset). With `post`,
    every request is a JSON comment with its own email and text. With `expect`, responses
    are counted by status and reported by done()."""
    lines = ["local paths = {", *(f"  {_lua_string(p)}," for p in paths), "}"]
    if headers:
        lines += ["local hdrs = {"]
        for h in headers:
            pairs = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in h.items())
            lines.append(f"  {{{pairs}}},")
        lines += ["}"]
    else:
        lines += ["local hdrs = nil"]
    lines += [
        "local n = #paths",
        "local i = 0",
        "local sent = 0",
        "local counter = 0",
        "local threads = {}",
        "function setup(thread)",
        "  thread:set('tid', counter)",
        "  counter = counter + 1",
        "  table.insert(threads, thread)",
        "end",
        "function init(args)",
        "  i = ((tid or 0) * 7919) % n",
        "  hits = 0",
        "  misses = 0",
        "  other_status = 0",
        "end",
    ]
    if post:
        words = " ".join(vocab.GENERAL_WORDS[:60])
        lines += [
            "local run = __RUN__",
            f"local words = {_lua_string(words)}",
            "wrk.method = 'POST'",
            "wrk.headers['Content-Type'] = 'application/json'",
            "function request()",
            "  i = i % n + 1",
            "  sent = sent + 1",
            "  local who = (run * 4 + (tid or 0)) * 10000000 + sent",
            "  local cut = (sent * 37) % 300",
            '  local body = string.format(\'{"author_name": "Reader %d", \'',
            '    .. \'"author_email": "reader%d@example.com", \'',
            '    .. \'"content": "Comment %d from the benchmark: %s"}\',',
            "    who, who, who, string.sub(words, cut + 1, cut + 120))",
            "  return wrk.format('POST', paths[i], nil, body)",
            "end",
        ]
    else:
        lines += [
            "function request()",
            "  i = i % n + 1",
            "  return wrk.format(nil, paths[i], hdrs and hdrs[i] or nil)",
            "end",
        ]
    if expect is not None:
        lines += [
            "function response(status, headers, body)",
            f"  if status == {expect} then hits = hits + 1 else",
            "    misses = misses + 1",
            "    other_status = status",
            "  end",
            "end",
            "function done(summary, latency, requests)",
            "  local h, m, s = 0, 0, 0",
            "  for _, t in ipairs(threads) do",
            "    h = h + t:get('hits')",
            "    m = m + t:get('misses')",
            "    if t:get('other_status') ~= 0 then s = t:get('other_status') end",
            "  end",
            "  io.write(string.format('BENCH_STATUS %d %d %d\\n', h, m, s))",
            "end",
        ]
    return "\n".join(lines) + "\n"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Measure:
    rps: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    hits: int | None = None  # responses with the expected status, when one is expected
    other_status: int = 0
    failed: str | None = None

    @property
    def errors(self) -> int:
        if self.failed:
            return max(self.requests, 1)
        if self.hits is not None:
            return self.requests - self.hits + self.socket_errors
        return self.non_2xx + self.socket_errors


def parse_wrk(output: str) -> Measure:
    m = Measure()
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    m.rps = float(found.group(1)) if found else 0.0
    for pct, attr in (("50", "p50"), ("99", "p99")):
        found = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.M)
        if found:
            setattr(m, attr, _ms(found.group(1)))
    found = re.search(r"(\d+) requests in", output)
    m.requests = int(found.group(1)) if found else 0
    found = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    m.non_2xx = int(found.group(1)) if found else 0
    found = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    m.socket_errors = sum(int(g) for g in found.groups()) if found else 0
    found = re.search(r"BENCH_STATUS (\d+) (\d+) (\d+)", output)
    if found:
        m.hits, _, m.other_status = (int(g) for g in found.groups())
    if not found and "BENCH_STATUS" in output:
        m.failed = "unreadable status counts"
    if m.requests == 0 and not m.failed:
        m.failed = "no response completed in the run"
    return m


class Wrk:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        # The Lua scripts of this run; removed when the process exits.
        self._dir = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        self.scripts = Path(self._dir.name)
        self.count = 0
        # Unique per wrk run (even across bench runs): POSTed emails and texts never repeat.
        self.salt = int(time.time()) % 100_000

    def run(self, base: str, script: str | None, seconds: int, path: str = "/") -> Measure:
        command = [
            self.binary,
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "5s",
        ]
        if script is not None:
            self.count += 1
            file = self.scripts / f"script-{self.count}.lua"
            file.write_text(script.replace("__RUN__", str(self.salt * 1000 + self.count)))
            command += ["-s", str(file)]
        command.append(base + path)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return Measure(failed=(done.stderr or done.stdout).strip()[:200])
        return parse_wrk(done.stdout)

    def measure(self, base: str, script: str | None, path: str = "/") -> Measure:
        """Warm up, then measure. The warm-up repeats (up to 8 rounds) while throughput still
        climbs by more than 15%: a response cache fills over many distinct URLs."""
        if WARMUP > 0:
            previous = self.run(base, script, WARMUP, path).rps
            for _ in range(7):
                current = self.run(base, script, WARMUP, path).rps
                if current <= previous * 1.15:
                    break
                previous = current
        return self.run(base, script, DURATION, path)


# --- the database's side ---------------------------------------------------------------


@dataclass
class Fixtures:
    articles: int = 0
    public: int = 0
    comments: int = 0
    ids: list[int] = field(default_factory=list)
    slugs: list[str] = field(default_factory=list)
    open_ids: list[int] = field(default_factory=list)
    category: str = "world"
    hot_id: int | None = None
    hot_comments: int = 0
    deep_page: int = DEEP_PAGE
    cursor: str | None = None
    max_comment_id: int = 0
    pg_version: str = ""


def encode_cursor(order: str, value: str, article_id: int) -> str:
    """As app.articles.service.encode_cursor: base64url(JSON) without padding."""
    raw = json.dumps({"o": order, "v": value, "i": article_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _state_hot(database_url: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        state = json.loads(STATE.read_text())
        return int(state["databases"][safe_url(database_url)]["hot_article_id"])
    return None


async def pg_connect(database_url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(**_pg_params(database_url))


async def article_count(database_url: str) -> int:
    """Articles in the database; -1 when the schema is not there yet."""
    await ensure_pg_database(database_url)
    conn = await pg_connect(database_url)
    try:
        if not await conn.fetchval("SELECT to_regclass('articles') IS NOT NULL"):
            return -1
        return int(await conn.fetchval("SELECT count(*) FROM articles"))
    finally:
        await conn.close()


async def load_fixtures(database_url: str, seed: int = 5186) -> Fixtures:
    rng = random.Random(seed)
    conn = await pg_connect(database_url)
    try:
        f = Fixtures()
        f.pg_version = await conn.fetchval("SHOW server_version")
        f.articles = await conn.fetchval("SELECT count(*) FROM articles")
        f.comments = await conn.fetchval("SELECT count(*) FROM comments")
        f.max_comment_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM comments")
        rows = await conn.fetch(
            "SELECT id, slug, comment_status = 'open' AND (comments_close_at IS NULL "
            f"OR comments_close_at > now()) AS open FROM articles WHERE {PUBLIC} ORDER BY id"
        )
        f.public = len(rows)
        sample = rng.sample(rows, min(SAMPLE_IDS, len(rows)))
        f.ids = [r["id"] for r in sample]
        f.slugs = [r["slug"] for r in sample]
        open_rows = [r for r in rows if r["open"]]
        f.open_ids = [r["id"] for r in rng.sample(open_rows, min(SAMPLE_IDS, len(open_rows)))]
        top = await conn.fetchval(
            "SELECT slug FROM categories WHERE parent_id IS NULL ORDER BY id LIMIT 1"
        )
        f.category = top or "world"
        f.hot_id = _state_hot(database_url)
        if f.hot_id is None:
            f.hot_id = await conn.fetchval(
                "SELECT article_id FROM comments GROUP BY article_id ORDER BY count(*) DESC LIMIT 1"
            )
        if f.hot_id is not None:
            f.hot_comments = await conn.fetchval(
                "SELECT count(*) FROM comments WHERE article_id = $1", f.hot_id
            )
        # Deep page and cursor at the same depth: ~50,000 items in (less on a small database).
        enough = f.public > DEEP_PAGE * PER_PAGE
        f.deep_page = DEEP_PAGE if enough else max(2, f.public // 2 // PER_PAGE)
        offset = (f.deep_page - 1) * PER_PAGE - 1
        row = await conn.fetchrow(
            f"SELECT id, published_at FROM articles WHERE {PUBLIC} "
            "ORDER BY published_at DESC, id DESC OFFSET $1 LIMIT 1",
            offset,
        )
        if row is not None:
            moment = row["published_at"].astimezone(UTC).isoformat()
            f.cursor = encode_cursor("-published_at", moment, row["id"])
        return f
    finally:
        await conn.close()


async def remove_posted_comments(database_url: str, after_id: int) -> int:
    """Undo the POST scenario: its comments go, and the counts they touched are recounted."""
    conn = await pg_connect(database_url)
    try:
        async with conn.transaction():
            touched = [
                r["article_id"]
                for r in await conn.fetch(
                    "SELECT DISTINCT article_id FROM comments WHERE id > $1", after_id
                )
            ]
            if not touched:
                return 0
            removed = await conn.fetchval(
                "WITH gone AS (DELETE FROM comments WHERE id > $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                after_id,
            )
            await conn.execute(
                "UPDATE articles SET comment_count = (SELECT count(*) FROM comments c "
                "WHERE c.article_id = articles.id AND c.status = 'approved') "
                "WHERE id = ANY($1::int[])",
                touched,
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('comments', 'id'), GREATEST($1, 1), $1 > 0)",
                after_id,
            )
            return int(removed)
    finally:
        await conn.close()


# --- scenarios -------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    scenario: str
    mode: str
    measure: Measure
    note: str = ""
    target: str = ""
    passed: bool | None = None


@dataclass
class Scenario:
    key: str
    label: str
    script: str | None
    note: str = ""


def _pages_of(reply: Reply) -> int | None:
    data = reply.json()
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("pages"), int):
        return int(data["pages"])
    total, per_page = data.get("total"), data.get("per_page")
    if isinstance(total, int) and isinstance(per_page, int) and per_page > 0:
        return max(1, -(-total // per_page))
    return None


def _status_note(reply: Reply) -> str:
    return f"probe answered {reply.status or 'nothing'}" if reply.status != 200 else ""


API = "/api/v1/articles"


def _detail(server: Server, fx: Fixtures) -> Scenario:
    return Scenario("detail", "article detail by id", lua_script([f"{API}/{i}" for i in fx.ids]))


def _slug(server: Server, fx: Fixtures) -> Scenario:
    paths = [f"{API}/by-slug/{s}" for s in fx.slugs]
    return Scenario("slug", "article detail by slug", lua_script(paths))


def _list(server: Server, fx: Fixtures) -> Scenario:
    return Scenario("list", "list page 1", lua_script([f"{API}?per_page={PER_PAGE}"]))


def _category(server: Server, fx: Fixtures) -> Scenario:
    path = f"{API}?category={fx.category}&per_page={PER_PAGE}"
    return Scenario("category", f"list, category={fx.category}", lua_script([path]))


def _deep_path(fx: Fixtures) -> str:
    return f"{API}?page={fx.deep_page}&per_page={PER_PAGE}"


def _deep(server: Server, fx: Fixtures) -> Scenario:
    return Scenario("deep", f"list, page={fx.deep_page}", lua_script([_deep_path(fx)]))


def _cursor(server: Server, fx: Fixtures) -> Scenario | None:
    if not fx.cursor:
        return None
    path = f"{API}?cursor={fx.cursor}&per_page={PER_PAGE}"
    by_page = http(server.base + _deep_path(fx)).json() or {}
    by_cursor = http(server.base + path).json() or {}

    def ids(data: dict[str, Any]) -> list[Any]:
        return [item.get("id") for item in data.get("items", [])]

    same = ids(by_page) == ids(by_cursor) and ids(by_page)
    note = "" if same else "cursor page differs from the deep page"
    label = f"list, cursor at item {(fx.deep_page - 1) * PER_PAGE:,}"
    return Scenario("cursor", label, lua_script([path]), note)


def _search(server: Server, fx: Fixtures) -> Scenario:
    paths = [f"{API}?q={w}&per_page={PER_PAGE}" for w in vocab.SEARCH_WORDS]
    totals = []
    for path in paths:
        data = http(server.base + path).json()
        totals.append(str(data.get("total")) if isinstance(data, dict) else "?")
    matches = ", ".join(f"{w} {t}" for w, t in zip(vocab.SEARCH_WORDS, totals, strict=True))
    label = "search q=" + ", ".join(vocab.SEARCH_WORDS[:2]) + ", …"
    return Scenario("search", label, lua_script(paths), f"matches: {matches}")


def _comments_path(fx: Fixtures) -> str:
    return f"{API}/{fx.hot_id}/comments"


def _comments_first(server: Server, fx: Fixtures) -> Scenario:
    path = _comments_path(fx) + "?page=1"
    first = http(server.base + path)
    note = _status_note(first) or f"{fx.hot_comments:,} comments, {_pages_of(first)} pages"
    return Scenario("comments_first", f"comments of {fx.hot_id}, page 1", lua_script([path]), note)


def _comments_last(server: Server, fx: Fixtures) -> Scenario:
    pages = _pages_of(http(server.base + _comments_path(fx) + "?page=1"))
    path = _comments_path(fx) + f"?page={pages or 1}"
    note = "" if pages else "last page unknown: page 1 used"
    label = f"comments of {fx.hot_id}, last page"
    return Scenario("comments_last", label, lua_script([path]), note)


def _not_modified(server: Server, fx: Fixtures) -> Scenario:
    """Fresh ETags, read right before the run (a POST elsewhere may change a detail)."""
    etag_ids, etags = [], []
    for article_id in fx.ids[:200]:
        reply = http(f"{server.base}{API}/{article_id}")
        if reply.status == 200 and reply.headers.get("etag"):
            etag_ids.append(article_id)
            etags.append(reply.headers["etag"])
    script = lua_script(
        [f"{API}/{i}" for i in etag_ids] or [f"{API}/{fx.ids[0]}"],
        headers=[{"If-None-Match": e} for e in etags] or None,
        expect=304,
    )
    note = f"{len(etags)} ETags" if etags else "no ETag on the detail"
    return Scenario("not_modified", "detail revalidation (304)", script, note)


def _post(server: Server, fx: Fixtures) -> Scenario:
    paths = [f"{API}/{i}/comments" for i in fx.open_ids]
    return Scenario("post", "comment POST", lua_script(paths, post=True, expect=201))


# In running order: the 304 run reads ETags before the POST run changes comment counts.
SCENARIOS = [
    _detail, _slug, _list, _category, _deep, _cursor, _search, _comments_first,
    _comments_last, _not_modified, _post,
]  # fmt: skip
SCENARIO_KEYS = [
    "detail", "slug", "list", "category", "deep", "cursor", "search", "comments_first",
    "comments_last", "not_modified", "post",
]  # fmt: skip


@dataclass
class Target:
    text: str
    check: Any  # callable(row, rows, reference_rps) -> bool


def targets_for(key: str, mode: str) -> Target | None:
    def ratio_at_least(x: float) -> Target:
        return Target(
            f"≥ {x:g}× ref",
            lambda r, rows, ref: ref > 0 and r.measure.rps / ref >= x and not r.measure.errors,
        )

    def near_page_one() -> Target:
        def check(r: Row, rows: list[Row], ref: float) -> bool:
            first = next((x for x in rows if x.key == "list" and x.mode == r.mode), None)
            return (
                first is not None
                and first.measure.p50 > 0
                and r.measure.p50 <= 1.5 * first.measure.p50
                and not r.measure.errors
            )

        return Target("p50 ≤ 1.5× page 1", check)

    def p99_below(ms: float) -> Target:
        return Target(
            f"p99 < {ms:g} ms",
            lambda r, rows, ref: 0 < r.measure.p99 < ms and not r.measure.errors,
        )

    warm = mode == "warm"
    match key:
        case "detail" | "slug":
            return ratio_at_least(1.0 if warm else 0.3)
        case "list" | "category":
            return ratio_at_least(1.0 if warm else 0.2)
        case "deep" | "cursor":
            return near_page_one()
        case "search" | "comments_first" | "comments_last":
            return p99_below(50)
        case "post":
            return Target(
                "≥ 1200/s, p99 < 100 ms, no errors",
                lambda r, rows, ref: (
                    r.measure.rps >= 1200 and 0 < r.measure.p99 < 100 and r.measure.errors == 0
                ),
            )
    return None


# --- reporting -------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    revision = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(cpus),
        "CPU": model or platform.processor() or "?",
        "memory": memory or "?",
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
        "code": revision or "?",
    }


def busy_warning() -> float:
    """The 1-minute load average, with a warning when other work competes for the CPUs."""
    load = os.getloadavg()[0]
    cpus = len(os.sched_getaffinity(0))
    if load > cpus / 2:
        say(
            f"warning: load average {load:.1f} on {cpus} CPUs: other work competes, figures "
            "will be low and noisy"
        )
    return load


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
            *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows),
        ]
    )


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if value else "–"


def result_rows(rows: list[Row], reference: float) -> list[list[str]]:
    out = []
    for r in rows:
        m = r.measure
        ratio = f"{m.rps / reference:.2f}×" if reference and m.rps else "–"
        verdict = "" if r.passed is None else ("PASS" if r.passed else "MISS")
        target = f"{verdict} {r.target}".strip()
        note = "; ".join(x for x in (r.note, m.failed) if x)
        errors = "failed" if m.failed else f"{m.errors:,}"
        if m.errors and not m.failed and m.other_status:
            errors += f" (e.g. {m.other_status})"
        out.append(
            [
                r.scenario,
                r.mode,
                _num(m.rps, 0),
                _num(m.p50, 2),
                _num(m.p99, 2),
                errors,
                ratio,
                target,
                note,
            ]
        )
    return out


HEADERS = ["scenario", "mode", "req/s", "p50 ms", "p99 ms", "errors", "× ref", "target", "note"]


# --- the suite -------------------------------------------------------------------------


def ensure_data(database_url: str, articles: int, comments: int, *, exact: bool = False) -> None:
    count = asyncio.run(article_count(database_url))
    if count > 0 and (not exact or count == articles):
        return
    say(f"{safe_url(database_url)} needs data: generating {articles:,} articles...")
    command = [
        PYTHON,
        "-m",
        "bench.generate",
        "--articles",
        str(articles),
        "--comments",
        str(comments),
        "--database-url",
        database_url,
    ]
    if count > 0:
        command.append("--reset")
    subprocess.run(command, cwd=ROOT, check=True)


def measure_reference(wrk: Wrk) -> tuple[Measure, Measure]:
    say(f"reference FastAPI app ({WORKERS} workers)...")
    server = uvicorn_server("reference", "bench.reference_app:app", WORKERS)
    try:
        reference = wrk.measure(server.base, None, "/article")
    finally:
        server.stop()
    say(f"  {reference.rps:,.0f} req/s, p50 {reference.p50:.2f} ms, p99 {reference.p99:.2f} ms")
    say(f"raw ASGI ceiling ({WORKERS} workers)...")
    server = uvicorn_server("raw-asgi", "bench.raw_asgi:app", WORKERS)
    try:
        raw = wrk.measure(server.base, None, "/article")
    finally:
        server.stop()
    say(f"  {raw.rps:,.0f} req/s, p50 {raw.p50:.2f} ms, p99 {raw.p99:.2f} ms")
    return reference, raw


def settle(server: Server, limit: float = 60) -> None:
    """Wait for the requests a previous overloaded run left queued in the service (they go on
    after wrk hangs up) to drain: until /readyz, which uses the database, answers quickly."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        started = time.monotonic()
        answered = http(server.base + "/readyz", timeout=10).status == 200
        if answered and time.monotonic() - started < 0.1:
            return
        time.sleep(0.5)


def run_mode(
    wrk: Wrk, database_url: str, fx: Fixtures, mode: str, keys: set[str] | None
) -> tuple[list[Row], list[float], dict[str, Any]]:
    say(
        f"service, {mode} (RESPONSE_CACHE={'true' if mode == 'warm' else 'false'}, "
        f"{WORKERS} workers)..."
    )
    server = start_service(database_url, mode)
    rows: list[Row] = []
    info: dict[str, Any] = {}
    try:
        sizes = [len(http(f"{server.base}/api/v1/articles/{i}").body) for i in fx.ids[:50]]
        info["detail_bytes"] = sum(sizes) / len(sizes) if sizes else 0
        for key, build in zip(SCENARIO_KEYS, SCENARIOS, strict=True):
            if keys is not None and key not in keys:
                continue
            settle(server)
            scenario = build(server, fx)
            if scenario is None:
                continue
            measure = wrk.measure(server.base, scenario.script)
            rows.append(Row(scenario.key, scenario.label, mode, measure, scenario.note))
            say(
                f"  {scenario.label:<36} {measure.rps:>9,.0f} req/s  p50 {measure.p50:7.2f} ms"
                f"  p99 {measure.p99:7.2f} ms  errors {measure.errors:,}"
                + (f"  [{measure.failed}]" if measure.failed else "")
            )
            if server.proc.poll() is not None:
                raise RuntimeError(f"the service died:\n{server.tail()}")
        rss = server.rss_mb()
    finally:
        server.stop()
    return rows, rss, info


def judge(rows: list[Row], reference: float) -> None:
    for row in rows:
        target = targets_for(row.key, row.mode)
        if target is not None:
            row.target = target.text
            row.passed = bool(target.check(row, rows, reference))


def suite(args: argparse.Namespace) -> int:
    database_url = args.database_url
    wrk = Wrk(ensure_wrk())
    ensure_data(database_url, 10_000, 100_000)
    load_start = busy_warning()
    fx = asyncio.run(load_fixtures(database_url))
    say(
        f"database {safe_url(database_url)}: {fx.articles:,} articles ({fx.public:,} public), "
        f"{fx.comments:,} comments; long-tail article {fx.hot_id} ({fx.hot_comments:,})"
    )
    say(
        f"wrk: {THREADS} threads, {CONNECTIONS} connections, warm-up in {WARMUP} s rounds, "
        f"then {DURATION} s"
    )
    reference, raw = measure_reference(wrk)
    keys = set(args.only.split(",")) if args.only else None
    if keys and keys - set(SCENARIO_KEYS):
        raise SystemExit(
            f"unknown scenario(s) {sorted(keys - set(SCENARIO_KEYS))}; "
            f"known: {', '.join(SCENARIO_KEYS)}"
        )
    rows: list[Row] = []
    rss: dict[str, list[float]] = {}
    info: dict[str, Any] = {}
    try:
        for mode in [m for m in ("warm", "cold") if m in args.modes.split(",")]:
            mode_rows, mode_rss, mode_info = run_mode(wrk, database_url, fx, mode, keys)
            rows += mode_rows
            rss[mode] = mode_rss
            info.setdefault("detail_bytes", mode_info.get("detail_bytes", 0))
    finally:
        removed = asyncio.run(remove_posted_comments(database_url, fx.max_comment_id))
        if removed:
            say(f"removed the {removed:,} comments the POST scenario made")
    judge(rows, reference.rps)

    from bench.reference_app import ARTICLE_JSON

    table = result_rows(rows, reference.rps)
    rss_rows = [
        [
            mode,
            ", ".join(f"{x:.0f}" for x in sizes),
            "PASS" if sizes and max(sizes) < 200 else "MISS",
        ]
        for mode, sizes in rss.items()
    ]
    passed = sum(1 for r in rows if r.passed) + sum(1 for r in rss_rows if r[2] == "PASS")
    judged = sum(1 for r in rows if r.passed is not None) + len(rss_rows)
    summary = [
        f"reference FastAPI app: {reference.rps:,.0f} req/s (p50 {reference.p50:.2f} ms, "
        f"p99 {reference.p99:.2f} ms), {len(ARTICLE_JSON):,} bytes per response; "
        f"service detail averages {info.get('detail_bytes', 0):,.0f} bytes",
        f"raw ASGI ceiling (information): {raw.rps:,.0f} req/s (p50 {raw.p50:.2f} ms)",
        f"targets met: {passed} of {judged}",
    ]
    say()
    say(plain_table(HEADERS, table))
    say()
    say(plain_table(["mode", "RSS per worker (MB)", "< 200 MB"], rss_rows))
    say()
    for line in summary:
        say(line)

    facts = machine()
    facts["load average (1 min), start → end"] = f"{load_start:.1f} → {os.getloadavg()[0]:.1f}"
    facts["PostgreSQL"] = fx.pg_version
    facts["Redis"] = "yes (REDIS_URL set)" if redis_answers() else "no"
    md = [
        "# Benchmark results",
        "",
        f"`make bench` on {facts['date']}.",
        "",
        fmt_table(["machine", ""], [[k, v] for k, v in facts.items()]),
        "",
        f"Data: {fx.articles:,} articles ({fx.public:,} public), {fx.comments:,} comments; "
        f"long-tail article {fx.hot_id} with {fx.hot_comments:,} comments. "
        f"Service: `python -m app serve`, ENVIRONMENT=production, {WORKERS} workers; warm = "
        "RESPONSE_CACHE=true, cold = RESPONSE_CACHE=false. "
        f"wrk: {THREADS} threads, {CONNECTIONS} connections, warm-up in {WARMUP} s rounds "
        "(repeated while throughput climbs), then "
        f"{DURATION} s. × ref = req/s over the reference FastAPI app's, same run, same workers.",
        "",
        fmt_table(HEADERS, table),
        "",
        fmt_table(["mode", "RSS per worker (MB)", "< 200 MB"], rss_rows),
        "",
        *(f"- {line}" for line in summary),
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(md))
    say(f"\nwritten: {args.output}")
    return 0


# --- growth ----------------------------------------------------------------------------


def _size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def growth_url(base_url: str, size: int) -> str:
    from sqlalchemy import make_url

    return (
        make_url(base_url)
        .set(database=f"bench_{_size_label(size)}")
        .render_as_string(hide_password=False)
    )


def growth(args: argparse.Namespace) -> int:
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    load_start = busy_warning()
    wrk = Wrk(ensure_wrk())
    results: dict[tuple[str, str], dict[int, Measure]] = {}
    for size in sizes:
        url = growth_url(args.database_url, size)
        comments = min(GROWTH_COMMENTS_PER_ARTICLE * size, GROWTH_MAX_COMMENTS)
        ensure_data(url, size, comments, exact=True)
        fx = asyncio.run(load_fixtures(url))
        say(f"{safe_url(url)}: {fx.articles:,} articles, {fx.comments:,} comments")
        try:
            for mode in ("warm", "cold"):
                rows, _, _ = run_mode(wrk, url, fx, mode, {"list", "detail"})
                for row in rows:
                    results.setdefault((row.scenario, mode), {})[size] = row.measure
        finally:
            asyncio.run(remove_posted_comments(url, fx.max_comment_id))
    headers = ["scenario", "mode"]
    for size in sizes:
        headers += [f"p50 ms @{_size_label(size)}", f"req/s @{_size_label(size)}"]
    headers.append(f"p50 growth {_size_label(sizes[0])}→{_size_label(sizes[-1])}")
    table = []
    for (scenario, mode), by_size in results.items():
        line = [scenario, mode]
        for size in sizes:
            m = by_size.get(size)
            line += [_num(m.p50, 2) if m else "–", _num(m.rps, 0) if m else "–"]
        first, last = by_size.get(sizes[0]), by_size.get(sizes[-1])
        valid = first and last and first.p50 and last.p50 and not (first.failed or last.failed)
        line.append(f"{last.p50 / first.p50:.2f}×" if valid else "–")
        table.append(line)
    say()
    say(plain_table(headers, table))
    facts = machine()
    md = [
        "# Growth: latency against database size",
        "",
        f"`make bench-growth` / `make bench-large` on {facts['date']}; "
        f"{facts['nproc']} CPUs ({facts['CPU']}), {facts['memory']}, Python {facts['Python']}. "
        f"Databases bench_<size>, {GROWTH_COMMENTS_PER_ARTICLE} comments per article (at most "
        f"{GROWTH_MAX_COMMENTS:,}); {WORKERS} workers; wrk {THREADS} threads, {CONNECTIONS} "
        f"connections, {DURATION} s. Load average (1 min) {load_start:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        fmt_table(headers, table),
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "growth.md").write_text("\n".join(md))
    say(f"\nwritten: {(RESULTS / 'growth.md').relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DATABASE_URL,
        help="PostgreSQL (default: $BENCH_DATABASE_URL, $DATABASE_URL, else the local "
        "database `bench`)",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("suite", help="every scenario, warm and cold (the default)")
    run.add_argument("--output", type=Path, default=RESULTS / "latest.md")
    run.add_argument("--only", help="comma-separated scenario keys: " + ",".join(SCENARIO_KEYS))
    run.add_argument("--modes", default="warm,cold", help="warm, cold or both (default)")
    grow = sub.add_parser("growth", help="list page 1 and detail at several database sizes")
    grow.add_argument("--sizes", default="10000,100000")
    mix = sub.add_parser("mixed", help="reads while comments arrive; two instances; a flood")
    mix.add_argument(
        "--parts", default="mixed,instances,flood", help="any of mixed, instances, flood"
    )
    sub.add_parser("media", help="image renditions and uploads (SQLite of its own)")
    args = parser.parse_args(argv)
    if args.command == "media":
        from bench import media

        return media.run(args)
    if not args.database_url.startswith("postgresql"):
        parser.error("the benchmark runs on PostgreSQL: give a postgresql+asyncpg:// URL")
    if args.command == "growth":
        return growth(args)
    if args.command == "mixed":
        from bench import mixed

        return mixed.run(args)
    if args.command is None:
        args.only, args.output, args.modes = None, RESULTS / "latest.md", "warm,cold"
    return suite(args)


if __name__ == "__main__":
    sys.exit(main())
