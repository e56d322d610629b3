"""Public author profiles: only people with published articles, and never a login name or
an email, so the API cannot be used to enumerate accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.articles.queries import is_public
from app.cache import keys
from app.core.db import SessionDep, utcnow
from app.core.errors import NotFound
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.render import FieldsParam, json, parse_fields
from app.users.models import User

router = APIRouter(prefix="/api/v1/authors", tags=["authors"])


class AuthorPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    display_name: str
    slug: str = Field(description="Use with `/api/v1/articles?author=`.")
    bio: str | None
    avatar_url: str | None
    article_count: int = Field(description="Published articles.")


async def _authors(
    session: AsyncSession, *, slug: str | None = None, offset: int = 0, limit: int = 1
) -> tuple[list[tuple[int, AuthorPublic]], int]:
    """(user id, profile) of the authors on one page, and how many there are."""
    counts = (
        select(Article.author_id, func.count().label("n"))
        .where(is_public(utcnow()))
        .group_by(Article.author_id)
        .subquery()
    )
    query = select(User, counts.c.n).join(counts, counts.c.author_id == User.id)
    if slug is not None:
        query = query.where(User.slug == slug)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.execute(
        query.order_by(User.display_name, User.id).offset(offset).limit(limit)
    )
    authors = [
        (
            user.id,
            AuthorPublic(
                display_name=user.display_name,
                slug=user.slug,
                bio=user.bio,
                avatar_url=user.avatar_url,
                article_count=n,
            ),
        )
        for user, n in rows
    ]
    return authors, total


@router.get("", response_model=Page[AuthorPublic], responses=responses(422), summary="Authors")
async def list_authors(
    request: Request,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    fields: FieldsParam = None,
) -> Response:
    """People with at least one published article, by name."""
    wanted = parse_fields(fields, AuthorPublic)
    found, total = await _authors(session, offset=params.offset, limit=params.per_page)
    page = Page[AuthorPublic].of([author for _, author in found], total, params)
    response = json(page, fields=wanted, list_fields=True)
    set_page_headers(request, response, total=total, params=params)
    shown = [keys.author(user_id) for user_id, _ in found]
    return keys.label(response, [keys.AUTHORS, keys.LISTINGS, *shown])


@router.get(
    "/{slug}", response_model=AuthorPublic, responses=responses(404, 422), summary="An author"
)
async def read_author(
    session: SessionDep,
    slug: Annotated[str, Path(max_length=80)],
    fields: FieldsParam = None,
) -> Response:
    wanted = parse_fields(fields, AuthorPublic)
    found, _ = await _authors(session, slug=slug)
    if not found:
        raise NotFound(f"No author {slug}.")
    user_id, author = found[0]
    return keys.label(json(author, fields=wanted), [keys.author(user_id), keys.LISTINGS])
