"""The benchmark's data generator (bench/generate.py), on a tiny SQLite database: the rows it
writes are consistent (counts, threads, search index) and the app itself reads them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.core.config import Settings
from app.core.html import excerpt_of, plain_text, word_count
from app.main import create_app
from bench import generate
from tests.support import alembic_upgrade

ARTICLES, COMMENTS, LONG_TAIL = 30, 300, 50


def _run(url: str, state: Path, *extra: str) -> int:
    return generate.main(
        [
            "--articles",
            str(ARTICLES),
            "--comments",
            str(COMMENTS),
            "--long-tail",
            str(LONG_TAIL),
            "--database-url",
            url,
            "--state",
            str(state),
            "--no-migrate",  # migrated in-process by the test: a second interpreter costs seconds
            *extra,
        ]
    )


async def _read_with_app(url: str, hot: int) -> tuple[dict[str, object], dict[str, object]]:
    app = create_app(
        Settings(database_url=url, environment="test", redis_url=None, log_level="WARNING")
    )
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            listing = await c.get("/api/v1/articles", params={"per_page": 5})
            detail = await c.get(f"/api/v1/articles/{hot}")
    assert listing.status_code == 200, listing.text
    assert detail.status_code == 200, detail.text
    return listing.json(), detail.json()


def test_generator_fills_a_database_the_app_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    state_file = tmp_path / "state.json"
    alembic_upgrade(url)
    assert _run(url, state_file) == 0

    state = json.loads(state_file.read_text())
    entry = state["databases"][state["last"]]
    hot = entry["hot_article_id"]
    assert f"long-tail article: id {hot} " in capsys.readouterr().out

    db = sqlite3.connect(path)
    try:

        def one(sql: str, *args: object) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        assert one("SELECT count(*) FROM articles") == ARTICLES
        assert one("SELECT count(*) FROM comments") == COMMENTS
        assert one("SELECT count(*) FROM comments WHERE article_id = ?", hot) == LONG_TAIL
        assert 30 <= one("SELECT count(*) FROM users") <= 60
        assert 25 <= one("SELECT count(*) FROM categories") <= 35
        # A tree three levels deep, no deeper.
        assert one(
            "SELECT count(*) FROM categories c JOIN categories p ON c.parent_id = p.id "
            "WHERE p.parent_id IS NOT NULL"
        )
        assert not one(
            "SELECT count(*) FROM categories c JOIN categories p ON c.parent_id = p.id "
            "JOIN categories g ON p.parent_id = g.id WHERE g.parent_id IS NOT NULL"
        )
        assert one("SELECT count(*) FROM tags") >= 200
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []

        # Articles: unique numbers 1..N and slugs, derived fields as the service derives them.
        assert one("SELECT count(DISTINCT number) FROM articles") == ARTICLES
        assert one("SELECT min(number) FROM articles") == 1
        assert one("SELECT max(number) FROM articles") == ARTICLES
        assert one("SELECT count(DISTINCT slug) FROM articles") == ARTICLES
        assert one("SELECT count(*) FROM articles WHERE status = 'published'") >= ARTICLES - 3
        assert not one(
            "SELECT count(*) FROM articles WHERE status <> 'draft' AND published_at IS NULL"
        )
        for body, excerpt, words in db.execute("SELECT body, excerpt, word_count FROM articles"):
            text = plain_text(body)
            assert body.startswith("<p>")
            assert 450 <= words == word_count(text) <= 750
            assert excerpt == excerpt_of(text)
        # Every article is filed in its primary category; 1-3 tags each.
        assert (
            one(
                "SELECT count(*) FROM articles a WHERE NOT EXISTS (SELECT 1 FROM "
                "article_categories ac WHERE ac.article_id = a.id "
                "AND ac.category_id = a.category_id)"
            )
            == 0
        )
        assert one("SELECT count(DISTINCT article_id) FROM article_tags") == ARTICLES
        assert (
            one("SELECT max(n) FROM (SELECT count(*) AS n FROM article_tags GROUP BY article_id)")
            <= 3
        )

        # The search index: one row per article, rowid = id, the body as plain text.
        assert one("SELECT count(*) FROM articles_fts") == ARTICLES
        assert one("SELECT count(*) FROM articles_fts f JOIN articles a ON a.id = f.rowid") == (
            ARTICLES
        )
        fts_body, body = db.execute(
            "SELECT f.body, a.body FROM articles_fts f JOIN articles a ON a.id = f.rowid "
            "WHERE a.id = ?",
            (hot,),
        ).fetchone()
        assert fts_body == plain_text(body)
        assert one("SELECT count(*) FROM articles_fts WHERE articles_fts MATCH 'government'") > 0

        # Comments: counts match the approved ones, threads are consistent and several deep.
        assert (
            one(
                "SELECT count(*) FROM articles a WHERE comment_count <> (SELECT count(*) FROM "
                "comments c WHERE c.article_id = a.id AND c.status = 'approved')"
            )
            == 0
        )
        assert one("SELECT count(*) FROM comments WHERE status = 'approved'") > COMMENTS * 0.8
        assert one("SELECT max(depth) FROM comments") <= 4
        assert one("SELECT max(depth) FROM comments WHERE article_id = ?", hot) >= 2
        assert (
            one(
                "SELECT count(*) FROM comments WHERE parent_id IS NULL "
                "AND (root_id <> id OR depth <> 0)"
            )
            == 0
        )
        assert (
            one(
                "SELECT count(*) FROM comments c JOIN comments p ON c.parent_id = p.id "
                "WHERE c.root_id <> p.root_id OR c.depth <> p.depth + 1 "
                "OR c.article_id <> p.article_id OR p.status <> 'approved' "
                "OR c.created_at < p.created_at"
            )
            == 0
        )
        assert (
            one(
                "SELECT count(*) FROM comments c JOIN articles a ON a.id = c.article_id "
                "WHERE a.published_at IS NULL OR c.created_at <= a.published_at"
            )
            == 0
        )
        assert not one(
            "SELECT count(*) FROM comments WHERE content_html NOT LIKE '<p>%</p>' "
            "OR author_email IS NULL OR ip_address IS NULL"
        )
        hot_count = one("SELECT comment_count FROM articles WHERE id = ?", hot)
        public = one("SELECT count(*) FROM articles WHERE status = 'published'")
    finally:
        db.close()

    # A second run refuses to touch the filled database without --reset.
    assert _run(url, state_file) == 2
    assert "--reset" in capsys.readouterr().err

    listing, detail = asyncio.run(_read_with_app(url, hot))
    assert listing["total"] == public
    assert detail["id"] == hot
    assert detail["comment_count"] == hot_count
