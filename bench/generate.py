"""Fill a database with a realistic newsroom for the benchmarks.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python -m bench.generate --articles 100000 --comments 1000000

Users (editors and authors), a three-level category tree, a few hundred tags, articles with
~600-word bodies, and readers' comments with a long tail: one article gets exactly
`--long-tail` comments in threads up to four levels deep (its id is printed and written to
bench/.state.json), the rest are spread Zipf-like. Everything follows from `--seed`, except
the dates, which end at the current hour.

It migrates the database first, refuses to touch one that already has articles unless given
`--reset` (which empties every data table), then bulk-loads: COPY on PostgreSQL, executemany
in large transactions on SQLite (filling the `articles_fts` index as the service does). Rows
are generated in chunks, so memory stays flat however many comments are asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import random
import sqlite3
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import vocabulary as vocab

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"
DEFAULT_STATE = Path(__file__).resolve().parent / ".state.json"
BENCH_PASSWORD = "bench-password-1234"  # noqa: S105 - every generated user's password

DAY = 86_400.0
YEARS = 5
MAX_DEPTH = 4
EXCERPT_WORDS = 55

USER_COLUMNS = (
    "id", "username", "email", "password_hash", "role", "is_active", "display_name", "slug",
    "bio", "avatar_url", "created_at", "updated_at",
)  # fmt: skip
CATEGORY_COLUMNS = (
    "id", "name", "slug", "description", "parent_id", "created_at", "updated_at", "version",
)  # fmt: skip
TAG_COLUMNS = ("id", "name", "slug", "created_at", "updated_at", "version")
ARTICLE_COLUMNS = (
    "id", "number", "title", "kicker", "slug", "excerpt", "excerpt_given", "body", "status",
    "published_at", "created_at", "updated_at", "author_id", "byline", "source_name",
    "source_url", "featured_image_url", "featured_image_caption", "category_id",
    "comment_status", "comments_close_at", "word_count", "comment_count", "version",
)  # fmt: skip
ARTICLE_CATEGORY_COLUMNS = ("article_id", "category_id")
ARTICLE_TAG_COLUMNS = ("article_id", "tag_id")
COMMENT_COLUMNS = (
    "id", "article_id", "parent_id", "root_id", "depth", "status", "author_name",
    "author_email", "author_url", "content_source", "content_html", "ip_address",
    "user_agent", "created_at", "updated_at",
)  # fmt: skip
FTS_COLUMNS = ("rowid", "title", "kicker", "excerpt", "body")

PUBLISHED, DRAFT, SCHEDULED = 0, 1, 2


# --- options and the article-level plan ------------------------------------------------


@dataclass
class Options:
    articles: int
    comments: int
    long_tail: int = 5000
    seed: int = 5186
    reset: bool = False
    database_url: str = DEFAULT_DATABASE_URL
    state: Path = DEFAULT_STATE
    chunk: int = 1000
    migrate: bool = True


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _zipf(n: int, s: float = 1.0, offset: float = 2.7) -> list[float]:
    return [1.0 / (rank + offset) ** s for rank in range(n)]


def _mix(groups: list[tuple[list[str], float]]) -> tuple[list[str], list[float]]:
    """One weighted word list: each group gets its share, Zipf-distributed inside it."""
    words: list[str] = []
    weights: list[float] = []
    for group, share in groups:
        z = _zipf(len(group))
        total = sum(z)
        words += group
        weights += [share * w / total for w in z]
    return words, _cumulative(weights)


def plan_comment_counts(
    rng: random.Random, candidates: list[int], total: int, cap: int
) -> dict[int, int]:
    """Spread `total` comments over `candidates` (article indexes) Zipf-like, none above
    `cap`: the popularity rank is random, the weight of rank r is 1/(r+1)."""
    n = len(candidates)
    if n == 0 or total <= 0:
        return {}
    cap = max(cap, -(-total // n) + 1)
    order = candidates[:]
    rng.shuffle(order)
    weights = [1.0 / (r + 1) for r in range(n)]
    # Water-filling: the first k ranks sit at the cap, the rest get scale * weight.
    rest = sum(weights)
    k = 0
    scale = total / rest
    while k < n and scale * weights[k] > cap:
        rest -= weights[k]
        k += 1
        scale = (total - k * cap) / rest if rest > 0 else 0.0
    counts = [cap if r < k else int(scale * weights[r]) for r in range(n)]
    missing = total - sum(counts)
    r = 0
    while missing > 0:
        if counts[r % n] < cap:
            counts[r % n] += 1
            missing -= 1
        r += 1
    return {order[r]: c for r, c in enumerate(counts) if c}


@dataclass
class Plan:
    """Per-article facts decided up front (compact arrays: fine for millions)."""

    n: int
    now: float
    kind: bytearray
    closed: bytearray
    moment: array  # published_at (or the draft's creation time), epoch seconds
    comments: array  # comments to generate on each article
    hot: int  # index of the long-tail article

    @classmethod
    def build(cls, opts: Options, now: float) -> Plan:
        rng = random.Random(opts.seed)
        n = opts.articles
        end = now - 3600.0
        start = end - YEARS * 365.25 * DAY
        step = (end - start) / n
        kind = bytearray(n)
        closed = bytearray(n)
        moment = array("d", bytes(8 * n))
        for i in range(n):
            moment[i] = min(end, start + (i + 0.5 + rng.uniform(-0.45, 0.45)) * step)
            r = rng.random()
            if r < 0.01:
                kind[i] = DRAFT
            elif i >= n * 0.98 and r < 0.26:
                kind[i] = SCHEDULED
                moment[i] = now + rng.uniform(3600.0, 30 * DAY)
            if rng.random() < 0.03:
                closed[i] = 1
        public = [i for i in range(n) if kind[i] == PUBLISHED]
        if not public:
            kind[n - 1] = PUBLISHED
            moment[n - 1] = end
            public = [n - 1]
        # The long-tail article: a fairly recent public article with comments open.
        target = int(n * 0.9)
        hot = min(public, key=lambda i: (abs(i - target), i))
        closed[hot] = 0
        long_tail = min(opts.long_tail, opts.comments)
        others = [i for i in public if i != hot]
        cap = max(1, long_tail // 2)
        counts = plan_comment_counts(rng, others, opts.comments - long_tail, cap)
        if not others and opts.comments > long_tail:
            long_tail = opts.comments
        comments = array("i", bytes(4 * n))
        for i, count in counts.items():
            comments[i] = count
        comments[hot] = long_tail
        return cls(n, now, kind, closed, moment, comments, hot)


# --- rows ------------------------------------------------------------------------------


def _title_case(words: list[str]) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _slug(words: list[str], limit: int = 90) -> str:
    slug = "-".join(w.lower().strip(".,'") for w in words)
    return slug[:limit].rstrip("-").rsplit("-", 1)[0] if len(slug) > limit else slug


@dataclass
class Newsroom:
    """Generates every row. `ts` turns epoch seconds into what the database driver takes
    (aware datetimes for asyncpg, SQLAlchemy's text format for SQLite); `flag` likewise for
    booleans."""

    opts: Options
    plan: Plan
    ts: Callable[[float], Any]
    flag: Callable[[bool], Any]
    rng: random.Random = field(init=False)
    users: list[tuple[Any, ...]] = field(default_factory=list)
    categories: list[tuple[Any, ...]] = field(default_factory=list)
    tags: list[tuple[Any, ...]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.opts.seed + 1)
        self._vocabularies()
        self._people()
        self._taxonomy()
        self._readers()
        self.stats = {"articles": 0, "comments": 0, "approved": 0, "max_depth": 0}

    # vocabulary ------------------------------------------------------------------------

    def _vocabularies(self) -> None:
        function = list(dict.fromkeys(vocab.FUNCTION_WORDS))
        general = list(dict.fromkeys(vocab.GENERAL_WORDS))
        self.sections = list(vocab.SECTION_TOPICS)
        self.prose: dict[str, tuple[list[str], list[float]]] = {}
        self.titles: dict[str, tuple[list[str], list[float]]] = {}
        for section, topics in vocab.SECTION_TOPICS.items():
            topic = list(dict.fromkeys(w for t in topics for w in vocab.TOPIC_WORDS[t]))
            self.prose[section] = _mix(
                [(function, 0.45), (general, 0.38), (topic, 0.13), (vocab.PLACES, 0.04)]
            )
            self.titles[section] = _mix([(general, 0.45), (topic, 0.4), (vocab.PLACES, 0.15)])
        self.chatter = _mix([(function, 0.5), (general, 0.42), (vocab.PLACES, 0.08)])

    def _sentences(self, words: list[str], cum: list[float], n: int) -> list[str]:
        rng = self.rng
        tokens = rng.choices(words, cum_weights=cum, k=n)
        sentences = []
        i = 0
        while i < n:
            length = min(n - i, rng.randint(8, 24))
            part = tokens[i : i + length]
            part[0] = part[0].capitalize()
            if length > 14:
                part[length // 2] += ","
            sentences.append(" ".join(part) + ".")
            i += length
        return sentences

    def _paragraphs(self, words: list[str], cum: list[float], n: int) -> list[str]:
        sentences = self._sentences(words, cum, n)
        paragraphs = []
        i = 0
        while i < len(sentences):
            size = self.rng.randint(2, 5)
            paragraphs.append(" ".join(sentences[i : i + size]))
            i += size
        return paragraphs

    # people and taxonomy ---------------------------------------------------------------

    def _people(self) -> None:
        from app.core.security import hash_password

        rng = random.Random(self.opts.seed + 2)
        hashed = hash_password(BENCH_PASSWORD)  # one argon2 hash, shared: generation stays fast
        created = self.ts(self.plan.now - YEARS * 365.25 * DAY - 30 * DAY)
        roles = ["admin"] + ["editor"] * 6 + ["author"] * 30
        used: set[str] = set()
        for uid, role in enumerate(roles, start=1):
            if role == "admin":
                name, username = "Site Admin", "admin"
            else:
                while True:
                    name = f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}"
                    username = name.lower().replace(" ", ".")
                    if username not in used:
                        break
            used.add(username)
            slug = username.replace(".", "-")
            bio = f"{name} writes for the newsroom." if role != "admin" else None
            avatar = f"https://cdn.example.com/avatars/{slug}.jpg" if role != "admin" else None
            self.users.append(
                (
                    uid,
                    username,
                    f"{username}@newsroom.example",
                    hashed,
                    role,
                    self.flag(True),
                    name,
                    slug,
                    bio,
                    avatar,
                    created,
                    created,
                )
            )
        writers = [u[0] for u in self.users if u[4] != "admin"]
        self.writer_ids = writers
        self.writer_cum = _cumulative([3.0 if u[4] == "author" else 1.0 for u in self.users[1:]])

    def _taxonomy(self) -> None:
        created = self.ts(self.plan.now - YEARS * 365.25 * DAY - 20 * DAY)
        ids: dict[str, int] = {}
        top: dict[str, str] = {}
        for cid, (slug, name, parent, _) in enumerate(vocab.CATEGORIES, start=1):
            ids[slug] = cid
            top[slug] = top[parent] if parent else slug
            description = f"News and analysis: {name}."
            self.categories.append(
                (cid, name, slug, description, ids[parent] if parent else None, created, created, 1)
            )
        self.category_section = [top[c[0]] for c in vocab.CATEGORIES]
        self.category_cum = _cumulative([float(c[3]) for c in vocab.CATEGORIES])
        self.category_count = len(vocab.CATEGORIES)
        # Tags: places and topic words, a few hundred, the first ones most used.
        names: list[str] = []
        for word in vocab.PLACES:
            names.append(word)
        for words in vocab.TOPIC_WORDS.values():
            names += [w.capitalize() for w in words[:40]]
        names = list(dict.fromkeys(names))
        rng = random.Random(self.opts.seed + 3)
        rng.shuffle(names)
        for tid, name in enumerate(names, start=1):
            self.tags.append((tid, name, name.lower(), created, created, 1))

    def _readers(self) -> None:
        rng = random.Random(self.opts.seed + 4)
        count = max(20, min(20_000, self.opts.comments // 25))
        self.readers = []
        for n in range(count):
            first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
            name = f"{first} {last[0]}." if rng.random() < 0.6 else f"{first}{rng.randint(1, 99)}"
            email = f"{first.lower()}.{last.lower()}{n}@mail.example"
            if rng.random() < 0.1:
                ip = f"2001:db8:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
            else:
                ip = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"  # noqa: E501
            agent = rng.choice(vocab.USER_AGENTS)
            url = f"https://{first.lower()}{n}.blog.example" if rng.random() < 0.05 else None
            self.readers.append((name, email, url, ip, agent))

    # articles --------------------------------------------------------------------------

    def chunks(self) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
        size = self.opts.chunk
        for first in range(0, self.plan.n, size):
            chunk: dict[str, list[tuple[Any, ...]]] = {
                "articles": [],
                "article_categories": [],
                "article_tags": [],
                "comments": [],
                "articles_fts": [],
            }
            for i in range(first, min(first + size, self.plan.n)):
                self._article(i, chunk)
            yield chunk

    def _article(self, i: int, chunk: dict[str, list[tuple[Any, ...]]]) -> None:
        rng, plan, ts = self.rng, self.plan, self.ts
        aid = i + 1
        category = rng.choices(range(self.category_count), cum_weights=self.category_cum)[0]
        section = self.category_section[category]
        words, cum = self.prose[section]
        paragraphs = self._paragraphs(words, cum, rng.randint(520, 680))
        plain = " ".join(paragraphs)
        tokens = plain.split()
        word_count = len(tokens)
        excerpt = " ".join(tokens[:EXCERPT_WORDS]) + ("…" if word_count > EXCERPT_WORDS else "")
        body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
        twords, tcum = self.titles[section]
        title_words = rng.choices(twords, cum_weights=tcum, k=rng.randint(6, 11))
        title = _title_case(title_words)
        slug = f"{_slug(title_words)}-{aid}"
        kicker = None
        if rng.random() < 0.5:
            kicker = rng.choice(vocab.KICKERS if rng.random() < 0.6 else vocab.PLACES)

        kind = plan.kind[i]
        moment = plan.moment[i]
        if kind == DRAFT:
            status, published_at = "draft", None
            created = moment
            updated = min(plan.now, created + rng.uniform(0, 3 * DAY))
        else:
            status = "scheduled" if kind == SCHEDULED else "published"
            published_at = ts(moment)
            created = (
                plan.now - rng.uniform(3600, 5 * DAY)
                if kind == SCHEDULED
                else moment - rng.uniform(600, 2 * DAY)
            )
            updated = max(created, moment if kind == PUBLISHED else created)
            if kind == PUBLISHED and rng.random() < 0.2:
                updated = min(plan.now - 60, moment + rng.uniform(60, 3 * DAY))
        author = rng.choices(self.writer_ids, cum_weights=self.writer_cum)[0]
        byline = None
        source_name = source_url = None
        if rng.random() < 0.1:
            source_name = rng.choice(["Reuters", "AFP", "Associated Press", "Stars and Stripes"])
            source_url = f"https://wire.example.com/{aid}"
        elif rng.random() < 0.05:
            byline = f"By our correspondent in {rng.choice(vocab.PLACES)}"
        image = caption = None
        if rng.random() < 0.7:
            year = datetime.fromtimestamp(created, UTC).year
            image = f"https://cdn.example.com/images/{year}/{aid}.jpg"
            caption = _title_case(rng.choices(twords, cum_weights=tcum, k=rng.randint(5, 12)))

        approved = 0
        if kind != DRAFT and plan.comments[i]:
            approved = self._comments(aid, moment, plan.comments[i], i == plan.hot, chunk)

        chunk["articles"].append(
            (
                aid,
                aid,
                title,
                kicker,
                slug,
                excerpt,
                self.flag(False),
                body,
                status,
                published_at,
                ts(created),
                ts(updated),
                author,
                byline,
                source_name,
                source_url,
                image,
                caption,
                category + 1,
                "closed" if plan.closed[i] else "open",
                None,
                word_count,
                approved,
                1,
            )
        )
        chunk["article_categories"].append((aid, category + 1))
        if rng.random() < 0.2:
            second = rng.randrange(self.category_count)
            if second != category:
                chunk["article_categories"].append((aid, second + 1))
        ntags = len(self.tags)
        for tag in {int(ntags * rng.random() ** 2) + 1 for _ in range(rng.randint(1, 3))}:
            chunk["article_tags"].append((aid, tag))
        chunk["articles_fts"].append((aid, title, kicker or "", excerpt, plain))
        self.stats["articles"] += 1

    # comments --------------------------------------------------------------------------

    def _comments(
        self, aid: int, published: float, count: int, hot: bool, chunk: dict[str, list[Any]]
    ) -> int:
        """Append `count` comments in time order; returns how many are approved."""
        rng, ts = self.rng, self.ts
        limit = max(1.0, self.plan.now - published - 1.0)
        mean = (5 if hot else 2) * DAY
        times = []
        for _ in range(count):
            offset = rng.expovariate(1.0 / mean)
            if offset >= limit:
                offset = rng.uniform(0, limit)
            times.append(published + 1.0 + offset)
        times.sort()
        reply_chance = 0.6 if hot else 0.35
        # Approved comments that can still take a reply: (id, depth, root id).
        open_parents: list[tuple[int, int, int]] = []
        approved = 0
        readers = self.readers
        nreaders = len(readers)
        words, cum = self.chatter
        rows = chunk["comments"]
        stats = self.stats
        for moment in times:
            stats["comments"] += 1
            cid = stats["comments"]
            parent_id, depth, root = None, 0, cid
            if open_parents and rng.random() < reply_chance:
                if rng.random() < 0.6:  # answer the latest conversation: threads get deep
                    parent = open_parents[-1 - min(len(open_parents) - 1, int(rng.random() * 8))]
                else:
                    parent = open_parents[int(rng.random() * len(open_parents))]
                parent_id, depth, root = parent[0], parent[1] + 1, parent[2]
            r = rng.random()
            status = "approved" if r < 0.9 else "pending" if r < 0.96 else "spam"
            if status == "approved":
                approved += 1
                if depth < MAX_DEPTH:
                    open_parents.append((cid, depth, root))
            stats["max_depth"] = max(stats["max_depth"], depth)
            sentences = self._sentences(words, cum, rng.randint(8, 70))
            if len(sentences) > 2 and rng.random() < 0.3:
                cut = len(sentences) // 2
                paragraphs = [" ".join(sentences[:cut]), " ".join(sentences[cut:])]
            else:
                paragraphs = [" ".join(sentences)]
            name, email, url, ip, agent = readers[int(nreaders * rng.random() ** 2)]
            when = ts(moment)
            rows.append(
                (
                    cid,
                    aid,
                    parent_id,
                    root,
                    depth,
                    status,
                    name,
                    email,
                    url,
                    "\n\n".join(paragraphs),
                    "".join(f"<p>{p}</p>" for p in paragraphs),
                    ip,
                    agent,
                    when,
                    when,
                )
            )
        stats["approved"] += approved
        return approved


# --- loading ---------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, flush=True)


class Timer:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        _say(f"  {what}: {now - self.last:.1f} s")
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


def _pg_params(url: str) -> dict[str, Any]:
    from sqlalchemy import make_url

    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "database": parsed.database,
    }


async def ensure_pg_database(url: str) -> bool:
    """Create the database if missing; True when it was created."""
    import asyncpg

    params = _pg_params(url)
    name = params.pop("database")
    conn = await asyncpg.connect(**params, database="postgres")
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def _pg_articles(url: str) -> int:
    """Rows in `articles`, 0 when the table does not exist yet."""
    import asyncpg

    conn = await asyncpg.connect(**_pg_params(url))
    try:
        if not await conn.fetchval("SELECT to_regclass('articles') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM articles"))
    finally:
        await conn.close()


def _sqlite_articles(url: str) -> int:
    path = Path(_sqlite_path(url))
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'articles'"
        ).fetchone()
        return int(db.execute("SELECT count(*) FROM articles").fetchone()[0]) if found else 0
    finally:
        db.close()


def safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def migrate(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True)


def _aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _sqlite_text(seconds: float) -> str:
    # SQLAlchemy's SQLite DateTime format (naive UTC): timestamps compare as text.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Refused(Exception):
    pass


TABLE_COLUMNS = {
    "users": USER_COLUMNS,
    "categories": CATEGORY_COLUMNS,
    "tags": TAG_COLUMNS,
    "articles": ARTICLE_COLUMNS,
    "article_categories": ARTICLE_CATEGORY_COLUMNS,
    "article_tags": ARTICLE_TAG_COLUMNS,
    "comments": COMMENT_COLUMNS,
}


def check_schema(found: dict[str, dict[str, bool]]) -> None:
    """`found`: table -> {column: required (NOT NULL without a default)}. Refuses clearly
    when the migrations and this generator no longer agree."""
    problems = []
    for table, ours in TABLE_COLUMNS.items():
        have = found.get(table, {})
        unknown = [c for c in ours if c not in have]
        needed = [c for c, required in have.items() if required and c not in ours]
        if unknown:
            problems.append(f"{table} has no column {', '.join(unknown)}")
        if needed:
            problems.append(f"{table}.{', '.join(needed)} is required and not generated")
    if problems:
        raise Refused("the schema changed: " + "; ".join(problems) + " (update bench/generate.py)")


class _Producer:
    """Generates chunks in a thread while the event loop waits on PostgreSQL: the server's
    work (parsing, search vectors, indexes) overlaps with Python's."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=3)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(chunks,), daemon=True)
        self.thread.start()

    def _run(self, chunks: Iterator[Any]) -> None:
        try:
            for chunk in chunks:
                while not self.stop.is_set():
                    try:
                        self.queue.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
            self.queue.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self.queue.put(exc)

    async def __aiter__(self) -> Any:
        while True:
            item = await asyncio.to_thread(self.queue.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()


DATA_TABLE_ORDER = ("articles", "article_categories", "article_tags", "comments")


async def _secondary_indexes(conn: Any, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the indexes on `tables` that back no constraint."""
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = ANY($1::text[]) "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint) ORDER BY indexname",
        list(tables),
    )
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def load_postgres(opts: Options, plan: Plan, timer: Timer) -> dict[str, int]:
    """One transaction: it all lands or nothing does. Inside it the secondary indexes of the
    big tables are dropped and rebuilt after the COPY (their definitions are read from the
    database, so they come back exactly as the migrations made them), and, for a superuser,
    foreign-key triggers are skipped (the generator's rows are consistent by construction)."""
    import asyncpg

    conn = await asyncpg.connect(**_pg_params(opts.database_url))
    try:
        found: dict[str, dict[str, bool]] = {}
        for r in await conn.fetch(
            "SELECT table_name, column_name, is_nullable = 'NO' AND column_default IS NULL "
            "AND is_generated = 'NEVER' AND identity_generation IS NULL AS required "
            "FROM information_schema.columns WHERE table_schema = current_schema()"
        ):
            found.setdefault(r["table_name"], {})[r["column_name"]] = r["required"]
        check_schema(found)
        superuser = await conn.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        columns = {
            "articles": ARTICLE_COLUMNS,
            "article_categories": ARTICLE_CATEGORY_COLUMNS,
            "article_tags": ARTICLE_TAG_COLUMNS,
            "comments": COMMENT_COLUMNS,
        }
        async with conn.transaction():
            if opts.reset:
                tables = [
                    r["tablename"]
                    for r in await conn.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename <> 'alembic_version'"
                    )
                ]
                names = ", ".join(f'"{t}"' for t in tables)
                await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
                timer.lap(f"emptied {len(tables)} tables")
            room = Newsroom(opts, plan, ts=_aware, flag=bool)
            if superuser:
                await conn.execute("SET LOCAL session_replication_role = replica")
            indexes = await _secondary_indexes(conn, DATA_TABLE_ORDER)
            for name, _ in indexes:
                await conn.execute(f'DROP INDEX "{name}"')
            await conn.copy_records_to_table("users", records=room.users, columns=USER_COLUMNS)
            await conn.copy_records_to_table(
                "categories", records=room.categories, columns=CATEGORY_COLUMNS
            )
            await conn.copy_records_to_table("tags", records=room.tags, columns=TAG_COLUMNS)
            timer.lap(
                f"users {len(room.users)}, categories {len(room.categories)}, tags {len(room.tags)}"
            )
            producer = _Producer(room.chunks())
            started = time.perf_counter()
            articles = comments = reported = 0
            try:
                async for chunk in producer:
                    for table in DATA_TABLE_ORDER:
                        if chunk[table]:
                            await conn.copy_records_to_table(
                                table, records=chunk[table], columns=columns[table]
                            )
                    articles += len(chunk["articles"])
                    comments += len(chunk["comments"])
                    if articles - reported >= max(10_000, plan.n // 10) or articles == plan.n:
                        reported = articles
                        rate = articles / (time.perf_counter() - started)
                        _say(
                            f"    {articles:,} articles, {comments:,} comments "
                            f"({rate:,.0f} articles/s)"
                        )
            finally:
                producer.close()
            timer.lap(f"COPY: {articles:,} articles and {comments:,} comments")
            for _, statement in indexes:
                await conn.execute(statement)
            timer.lap(f"rebuilt {len(indexes)} indexes")
            for table in ("users", "categories", "tags", "articles", "comments"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
                )
        timer.lap("committed; sequences set to the highest ids")
        # VACUUM also sets the visibility map (index-only scans), as autovacuum would soon.
        await conn.execute("VACUUM (ANALYZE)")
        timer.lap("VACUUM (ANALYZE)")
        return room.stats
    finally:
        await conn.close()


def _sqlite_path(url: str) -> str:
    from sqlalchemy import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        raise SystemExit("bench.generate needs a file database, not an in-memory one")
    return database


def load_sqlite(opts: Options, plan: Plan, timer: Timer) -> dict[str, int]:
    db = sqlite3.connect(_sqlite_path(opts.database_url), isolation_level=None)
    try:
        check_schema(
            {
                table: {
                    r[1]: bool(r[3]) and r[4] is None and not r[5]
                    for r in db.execute(f"PRAGMA table_info({table})")
                }
                for table in TABLE_COLUMNS
            }
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA foreign_keys=OFF")
        if opts.reset:
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'articles_fts_%' "
                    "AND name <> 'alembic_version'"
                )
            ]
            db.execute("BEGIN")
            for table in tables:
                db.execute(f'DELETE FROM "{table}"')
            db.execute("COMMIT")
            timer.lap(f"emptied {len(tables)} tables")
        room = Newsroom(opts, plan, ts=_sqlite_text, flag=int)

        def insert(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
            marks = ", ".join("?" * len(columns))
            db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

        db.execute("BEGIN")
        insert("users", USER_COLUMNS, room.users)
        insert("categories", CATEGORY_COLUMNS, room.categories)
        insert("tags", TAG_COLUMNS, room.tags)
        db.execute("COMMIT")
        timer.lap(
            f"users {len(room.users)}, categories {len(room.categories)}, tags {len(room.tags)}"
        )
        columns = {
            "articles": ARTICLE_COLUMNS,
            "article_categories": ARTICLE_CATEGORY_COLUMNS,
            "article_tags": ARTICLE_TAG_COLUMNS,
            "comments": COMMENT_COLUMNS,
            "articles_fts": FTS_COLUMNS,
        }
        pending = 0
        db.execute("BEGIN")
        for chunk in room.chunks():
            for table, cols in columns.items():
                if chunk[table]:
                    insert(table, cols, chunk[table])
            pending += len(chunk["articles"]) + len(chunk["comments"])
            if pending >= 200_000:
                db.execute("COMMIT")
                db.execute("BEGIN")
                pending = 0
        db.execute("COMMIT")
        timer.lap(f"articles {room.stats['articles']:,} and comments {room.stats['comments']:,}")
        return room.stats
    finally:
        db.close()


def write_state(opts: Options, plan: Plan, stats: dict[str, int], seconds: float) -> None:
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(opts.state.read_text())
    entry = {
        "hot_article_id": plan.hot + 1,
        "long_tail_comments": plan.comments[plan.hot],
        "articles": stats["articles"],
        "comments": stats["comments"],
        "approved_comments": stats["approved"],
        "seed": opts.seed,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_seconds": round(seconds, 1),
    }
    key = safe_url(opts.database_url)
    state.setdefault("databases", {})[key] = entry
    state["last"] = key
    opts.state.parent.mkdir(parents=True, exist_ok=True)
    opts.state.write_text(json.dumps(state, indent=2) + "\n")


def generate(opts: Options) -> dict[str, Any]:
    timer = Timer()
    is_pg = opts.database_url.startswith("postgresql")
    _say(
        f"bench data: {opts.articles:,} articles, {opts.comments:,} comments "
        f"(long tail {min(opts.long_tail, opts.comments):,}) into {safe_url(opts.database_url)}"
    )
    if is_pg and asyncio.run(ensure_pg_database(opts.database_url)):
        timer.lap("created the database")
    existing = (
        asyncio.run(_pg_articles(opts.database_url))
        if is_pg
        else _sqlite_articles(opts.database_url)
    )
    if existing and not opts.reset:
        raise Refused(
            f"the articles table already has {existing:,} rows; pass --reset "
            "(make bench-data RESET=1) to empty the data tables and generate anew"
        )
    if opts.migrate:
        migrate(opts.database_url)
        timer.lap("migrations (alembic upgrade head)")
    now = math.floor(time.time() / 3600) * 3600.0  # dates end at the current hour
    plan = Plan.build(opts, now)
    timer.lap("planned articles and comment counts")
    if is_pg:
        stats = asyncio.run(load_postgres(opts, plan, timer))
    else:
        stats = load_sqlite(opts, plan, timer)
    seconds = timer.total
    write_state(opts, plan, stats, seconds)
    hot = plan.hot + 1
    _say(
        f"done in {seconds:.1f} s: {stats['articles']:,} articles, {stats['comments']:,} "
        f"comments ({stats['approved']:,} approved, threads up to depth {stats['max_depth']})"
    )
    _say(f"long-tail article: id {hot} with {plan.comments[plan.hot]:,} comments")
    _say(f"every generated user's password: {BENCH_PASSWORD} (e.g. admin)")
    return {"hot_article_id": hot, "seconds": seconds, **stats}


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument(
        "--long-tail", type=int, default=5000, help="comments on the one long-tail article"
    )
    parser.add_argument("--seed", type=int, default=5186)
    parser.add_argument("--reset", action="store_true", help="empty the data tables first")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="default: $DATABASE_URL, else the local PostgreSQL database `bench`",
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--chunk", type=int, default=1000, help="articles per batch")
    parser.add_argument("--no-migrate", dest="migrate", action="store_false")
    args = parser.parse_args(argv)
    if args.articles < 1 or args.comments < 0 or args.long_tail < 0:
        parser.error("--articles must be at least 1; --comments and --long-tail at least 0")
    return Options(
        articles=args.articles,
        comments=args.comments,
        long_tail=args.long_tail,
        seed=args.seed,
        reset=args.reset,
        database_url=args.database_url,
        state=args.state,
        chunk=args.chunk,
        migrate=args.migrate,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        generate(parse_args(argv))
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
