"""One search syntax, parsed by us, with the same results on SQLite (FTS5) and PostgreSQL
(tsquery): words, "phrases", -exclusions, OR, and the last word as a prefix."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.search import Term, parse
from tests.factories import make_article, make_user

API = "/api/v1/articles"
CORPUS = {
    "Taliban agree to peace talks": "Delegations meet in Doha to talk about peace.",
    "Talks about water stall": "Engineers and farmers disagree about the river.",
    "Kabul schools reopen": "Teachers welcome pupils back after winter.",
    "Herat schools add classrooms": "New classrooms open in three districts.",
    "Peace march in Herat": "Thousands walk through the old city for peace.",
}


@pytest.fixture
async def corpus(session: AsyncSession) -> None:
    author = await make_user(session)
    for title, text in CORPUS.items():
        await make_article(session, author, title=title, body=f"<p>{text}</p>")


async def found(client: httpx.AsyncClient, q: str) -> set[str]:
    response = await client.get(f"{API}?{urlencode({'q': q, 'per_page': 100})}")
    assert response.status_code == 200, response.text
    return {item["title"] for item in response.json()["items"]}


class TestOnBothDatabases:
    EXPECTED: ClassVar[dict[str, set[str]]] = {
        "schools": {"Kabul schools reopen", "Herat schools add classrooms"},
        "herat schools": {"Herat schools add classrooms"},
        "herat OR kabul": {
            "Kabul schools reopen",
            "Herat schools add classrooms",
            "Peace march in Herat",
        },
        "schools -kabul": {"Herat schools add classrooms"},
        '"peace talks"': {"Taliban agree to peace talks"},
        'peace -"peace talks"': {"Peace march in Herat"},
        '-"peace talks" peace': {"Peace march in Herat"},
        "tali": {"Taliban agree to peace talks"},  # search as you type
        '"tali"': set(),  # quoted, a word matches whole
        "the schools": {"Kabul schools reopen", "Herat schools add classrooms"},
        "classr": {"Herat schools add classrooms"},
        "herat OR kabul -schools": {"Peace march in Herat"},
        "-peace": set(),  # nothing to find: only an exclusion
        "AND": set(),
        "talks OR": {"Taliban agree to peace talks", "Talks about water stall"},
        'NEAR(peace talks) title:x "': set(),
    }

    @pytest.mark.parametrize("q", sorted(EXPECTED))
    async def test_each_query_finds_the_same_articles(
        self, client: httpx.AsyncClient, corpus: None, q: str
    ) -> None:
        assert await found(client, q) == self.EXPECTED[q]


def test_the_parse() -> None:
    parsed = parse('kabul OR herat "peace talks" -water tal')
    assert parsed.groups == [
        [Term(("kabul",)), Term(("herat",))],
        [Term(("peace", "talks"))],
        [Term(("tal",), prefix=True)],
    ]
    assert parsed.excluded == [Term(("water",))]
    assert parse('"peace talks"').groups == [[Term(("peace", "talks"))]]  # quoted: no prefix
