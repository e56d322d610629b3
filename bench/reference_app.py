"""The reference: a bare FastAPI app with one route, `GET /article`, that returns a constant
article through a Pydantic `response_model`, the least any FastAPI service does per request.

The article has the shape and size of the service's public article detail (about 5.6 KB of
JSON: a ~600-word body in <p> paragraphs, author, category, tags, breadcrumbs, neighbours).
`make bench` prints both sizes so a drift shows.

    .venv/bin/python -m uvicorn bench.reference_app:app --workers 2 --no-access-log
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from fastapi import FastAPI
from pydantic import BaseModel

from bench import vocabulary as vocab

BODY_WORDS = 600


class AuthorRef(BaseModel):
    display_name: str
    slug: str
    avatar_url: str | None


class CategoryRef(BaseModel):
    id: int
    name: str
    slug: str


class TagRef(BaseModel):
    id: int
    name: str
    slug: str


class Correction(BaseModel):
    id: int
    kind: str
    text: str
    noted_at: datetime


class ArticleLink(BaseModel):
    id: int
    number: int
    slug: str
    title: str
    published_at: datetime | None


class Article(BaseModel):
    id: int
    number: int
    slug: str
    title: str
    kicker: str | None
    excerpt: str
    status: str
    published_at: datetime | None
    updated_at: datetime
    author: AuthorRef
    byline: str | None
    category: CategoryRef | None
    tags: list[TagRef]
    source_name: str | None
    source_url: str | None
    featured_image_url: str | None
    featured_image_caption: str | None
    word_count: int
    reading_minutes: int
    comment_count: int
    comment_status: str
    comments_close_at: datetime | None
    comments_open: bool
    body: str
    categories: list[CategoryRef]
    breadcrumbs: list[CategoryRef]
    corrections: list[Correction]
    previous: ArticleLink | None
    next: ArticleLink | None


def _sentences(rng: random.Random, words: list[str], count: int) -> list[str]:
    out, done = [], 0
    while done < count:
        length = min(count - done, rng.randint(8, 24))
        part = [rng.choice(words) for _ in range(length)]
        part[0] = part[0].capitalize()
        out.append(" ".join(part) + ".")
        done += length
    return out


def build_article() -> dict[str, object]:
    """A typical published article (deterministic: the same bytes in every process)."""
    rng = random.Random(5186)
    words = vocab.FUNCTION_WORDS * 3 + vocab.GENERAL_WORDS + vocab.TOPIC_WORDS["politics"]
    sentences = _sentences(rng, words, BODY_WORDS)
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    plain = " ".join(paragraphs).split()
    published = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
    politics = {"id": 9, "name": "Politics", "slug": "politics"}
    elections = {"id": 10, "name": "Elections", "slug": "elections"}
    title = "Parliament approves the election reform bill after a long night of debate"
    return {
        "id": 48213,
        "number": 48213,
        "slug": "parliament-approves-the-election-reform-bill-after-a-long-night-of-debate-48213",
        "title": title,
        "kicker": "Analysis",
        "excerpt": " ".join(plain[:55]) + "…",
        "status": "published",
        "published_at": published,
        "updated_at": published,
        "author": {
            "display_name": "Mariam Karimi",
            "slug": "mariam-karimi",
            "avatar_url": "https://cdn.example.com/avatars/mariam-karimi.jpg",
        },
        "byline": None,
        "category": elections,
        "tags": [
            {"id": 12, "name": "Ballot", "slug": "ballot"},
            {"id": 31, "name": "Kabul", "slug": "kabul"},
        ],
        "source_name": None,
        "source_url": None,
        "featured_image_url": "https://cdn.example.com/images/2025/48213.jpg",
        "featured_image_caption": "Lawmakers leave the chamber after the vote in Kabul",
        "word_count": len(plain),
        "reading_minutes": 3,
        "comment_count": 14,
        "comment_status": "open",
        "comments_close_at": None,
        "comments_open": True,
        "body": "\n".join(f"<p>{p}</p>" for p in paragraphs),
        "categories": [elections],
        "breadcrumbs": [politics, elections],
        "corrections": [],
        "previous": {
            "id": 48170,
            "number": 48170,
            "slug": "turnout-falls-in-the-provincial-council-vote-48170",
            "title": "Turnout falls in the provincial council vote",
            "published_at": datetime(2025, 3, 13, 17, 2, 11, 120400, tzinfo=UTC),
        },
        "next": {
            "id": 48260,
            "number": 48260,
            "slug": "opposition-names-its-candidate-for-the-capital-48260",
            "title": "Opposition names its candidate for the capital",
            "published_at": datetime(2025, 3, 14, 15, 40, 0, 4100, tzinfo=UTC),
        },
    }


ARTICLE = build_article()
# The same bytes FastAPI sends (compact JSON); the raw ASGI app serves these.
ARTICLE_JSON = Article.model_validate(ARTICLE).model_dump_json().encode()

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/article", response_model=Article)
async def article() -> dict[str, object]:
    return ARTICLE
