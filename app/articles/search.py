"""Full-text search with one API over two engines: SQLite FTS5 on the embedded default,
PostgreSQL `tsvector` (a generated column with a GIN index) on PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.core.db import dialect_of
from app.core.html import plain_text

SEARCH_CONFIG = "english"
_WORD = re.compile(r"\w+", re.UNICODE)
_fts = table("articles_fts", column("rowid"))


def _fts5_query(q: str) -> str | None:
    # Every word quoted: user input can never be read as FTS5 syntax (NEAR, column:, *...).
    words = _WORD.findall(q)
    return " ".join(f'"{w}"' for w in words) if words else None


async def index(session: AsyncSession, article: Article) -> None:
    """Keep the SQLite index in step with the article (PostgreSQL computes its own)."""
    if dialect_of(session) != "sqlite":
        return
    await session.execute(text("DELETE FROM articles_fts WHERE rowid = :id"), {"id": article.id})
    await session.execute(
        text(
            "INSERT INTO articles_fts (rowid, title, kicker, excerpt, body) "
            "VALUES (:id, :title, :kicker, :excerpt, :body)"
        ),
        {
            "id": article.id,
            "title": article.title,
            "kicker": article.kicker or "",
            "excerpt": article.excerpt,
            "body": plain_text(article.body),
        },
    )


async def unindex(session: AsyncSession, article_id: int) -> None:
    if dialect_of(session) == "sqlite":
        await session.execute(
            text("DELETE FROM articles_fts WHERE rowid = :id"), {"id": article_id}
        )


def apply(query: Select[Any], q: str, dialect: str) -> tuple[Select[Any], ColumnElement[float]]:
    """Restrict `query` to matches of `q`; returns it with a relevance score (higher = better)."""
    if dialect == "postgresql":
        tsquery = func.websearch_to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), q)
        vector: ColumnElement[Any] = literal_column("articles.search_vector")
        return query.where(vector.op("@@")(tsquery)), func.ts_rank_cd(vector, tsquery)
    match = _fts5_query(q)
    if match is None:
        return query.where(literal_column("0") == 1), literal_column("0.0")
    hits = (
        select(
            literal_column("rowid").label("article_id"),
            # bm25 is lower-is-better; title and kicker weigh most, as on PostgreSQL.
            (-func.bm25(literal_column("articles_fts"), 10.0, 10.0, 4.0, 1.0)).label("score"),
        )
        .select_from(_fts)
        .where(literal_column("articles_fts").op("MATCH")(match))
        .subquery("hits")
    )
    joined = query.join(hits, hits.c.article_id == Article.id)
    return joined, hits.c.score
