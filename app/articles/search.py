"""Full-text search with one API over two engines: SQLite FTS5 on the embedded default,
PostgreSQL `tsvector` (a generated column with a GIN index) on PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.core.db import dialect_of
from app.core.html import plain_text

SEARCH_CONFIG = "english"
_WORD = re.compile(r"\w+", re.UNICODE)
_fts = table("articles_fts", column("rowid"))


# --- the query syntax ---------------------------------------------------------------------
# One syntax on both engines, parsed here and written out for each, so a query means the same
# on the embedded default and on PostgreSQL: words (all must match), "quoted phrases",
# -word or -"phrase" to exclude, OR between two terms, and the last bare word matching as a
# prefix (search as you type: `tali` finds "Taliban"; quoted, a word matches whole). Anything
# else is a word; nothing a reader types reaches either engine's own syntax.


@dataclass(frozen=True, slots=True)
class Term:
    words: tuple[str, ...]  # adjacent words: a phrase when more than one
    prefix: bool = False  # the last word matches as a prefix


@dataclass(frozen=True, slots=True)
class Parsed:
    groups: list[list[Term]]  # every group must match, by any of its terms
    excluded: list[Term]


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
# PostgreSQL's English stop words: a bare word among them matches nothing on either engine
# (FTS5 indexes every word, PostgreSQL none of these). Inside a phrase they still count.
_STOP_TEXT = (
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can did do does doing don down during each few for from "
    "further had has have having he her here hers herself him himself his how i if in into is "
    "it its itself just me more most my myself no nor not now of off on once only or other our "
    "ours ourselves out over own same she should so some such t than that the their theirs "
    "them themselves then there these they this those through to too under until up very was "
    "we were what when where which while who whom why will with you your yours yourself "
    "yourselves s"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())


def parse(q: str) -> Parsed:
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    joining = False
    last_bare: tuple[int, int] | None = None  # (group, term) of a trailing bare word
    for token in _TOKEN.finditer(q):
        bare = token.group(3)
        if bare == "OR":
            joining = bool(groups)
            continue
        negated = token.group(1) == "-" if bare is None else bare.startswith("-")
        text_ = token.group(2) if bare is None else bare.removeprefix("-")
        words = tuple(w.casefold() for w in _WORD.findall(text_))
        last_bare = None
        if bare is not None and len(words) == 1 and words[0] in STOP_WORDS:
            continue
        if not words:
            continue
        if negated:
            excluded.append(Term(words))
            joining = False
            continue
        if joining:
            groups[-1].append(Term(words))
        else:
            groups.append([Term(words)])
        joining = False
        if bare is not None:
            last_bare = (len(groups) - 1, len(groups[-1]) - 1)
    if last_bare is not None:
        group, index = last_bare
        groups[group][index] = Term(groups[group][index].words, prefix=True)
    return Parsed(groups, excluded)


def _tsquery(parsed: Parsed) -> str | None:
    def term(t: Term) -> str:
        lexemes = [f"'{w}'" for w in t.words]
        if t.prefix:
            lexemes[-1] += ":*"
        return "(" + " <-> ".join(lexemes) + ")"

    if not parsed.groups:
        return None
    required = " & ".join("(" + " | ".join(map(term, g)) + ")" for g in parsed.groups)
    return required + "".join(f" & !{term(t)}" for t in parsed.excluded)


def _fts5_query(q: str) -> str | None:
    parsed = parse(q)

    def term(t: Term) -> str:
        return '"' + " ".join(t.words) + '"' + ("*" if t.prefix else "")

    if not parsed.groups:
        return None
    required = " AND ".join("(" + " OR ".join(map(term, g)) + ")" for g in parsed.groups)
    return f"({required})" + "".join(f" NOT {term(t)}" for t in parsed.excluded)


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
        written = _tsquery(parse(q))
        if written is None:
            return query.where(literal_column("0") == 1), literal_column("0.0")
        tsquery = func.to_tsquery(literal_column(f"'{SEARCH_CONFIG}'"), written)
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
