from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import keys
from app.core.db import SessionDep
from app.core.http_cache import IfMatch, check_if_match
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.render import FieldsParam, json, parse_fields
from app.core.schemas import IdPath
from app.core.security import Principal, current_principal
from app.tags import service
from app.tags.models import Tag
from app.tags.schemas import TagCreate, TagPublic, TagUpdate

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])

EditorPrincipal = Annotated[Principal, Security(current_principal, scopes=["categories:write"])]


async def _tag(session: SessionDep, tag_id: IdPath) -> Tag:
    return await service.get(session, tag_id)


TagDep = Annotated[Tag, Depends(_tag)]


def _public(tag: Tag, article_count: int) -> TagPublic:
    return TagPublic(
        id=tag.id,
        name=tag.name,
        slug=tag.slug,
        article_count=article_count,
        created_at=tag.created_at,
        updated_at=tag.updated_at,
    )


async def _one(
    session: AsyncSession,
    tag: Tag,
    *,
    fields: set[str] | None = None,
    status_code: int = status.HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response:
    counts = await service.article_counts(session, [tag.id])
    response = json(
        _public(tag, counts.get(tag.id, 0)),
        fields=fields,
        status_code=status_code,
        headers=headers,
        version=tag.version,
    )
    return keys.label(response, [keys.tag(tag.id), keys.LISTINGS])


@router.get("", response_model=Page[TagPublic], responses=responses(422), summary="List tags")
async def list_tags(
    request: Request,
    response: Response,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None,
        Query(max_length=100, description="Only tags whose name contains this (any case)."),
    ] = None,
    fields: FieldsParam = None,
) -> Response:
    """Tags ordered by name, each with its number of published articles."""
    wanted = parse_fields(fields, TagPublic)
    rows, total = await service.list_page(session, q=q, offset=params.offset, limit=params.per_page)
    counts = await service.article_counts(session, [t.id for t in rows])
    set_page_headers(request, response, total=total, params=params)
    listing = Page[TagPublic].of([_public(t, counts.get(t.id, 0)) for t in rows], total, params)
    return keys.label(
        json(listing, fields=wanted, list_fields=True, headers=dict(response.headers)),
        [keys.TAGS, keys.LISTINGS, *(keys.tag(t.id) for t in rows)],
    )


@router.get(
    "/by-slug/{slug}",
    response_model=TagPublic,
    responses=responses(404, 422),
    summary="Read a tag by slug",
)
async def read_tag_by_slug(session: SessionDep, slug: str, fields: FieldsParam = None) -> Response:
    wanted = parse_fields(fields, TagPublic)
    return await _one(session, await service.by_slug(session, slug), fields=wanted)


@router.get(
    "/{tag_id}", response_model=TagPublic, responses=responses(404, 422), summary="Read a tag"
)
async def read_tag(session: SessionDep, tag: TagDep, fields: FieldsParam = None) -> Response:
    """The ETag goes in `If-Match` of a later `PUT`, `PATCH` or `DELETE`."""
    return await _one(session, tag, fields=parse_fields(fields, TagPublic))


@router.post(
    "",
    response_model=TagPublic,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
    summary="Create a tag",
)
async def create_tag(session: SessionDep, _: EditorPrincipal, data: TagCreate) -> Response:
    """Without `slug`, one is made from the name (transliterated: "Ölçüm" → "olcum").
    Articles can also create tags by naming them."""
    tag = await service.create(session, data)
    await session.commit()
    location = {"Location": f"/api/v1/tags/{tag.id}"}
    return await _one(session, tag, status_code=status.HTTP_201_CREATED, headers=location)


@router.put(
    "/{tag_id}",
    response_model=TagPublic,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Replace a tag",
)
async def replace_tag(
    session: SessionDep,
    _: EditorPrincipal,
    tag: TagDep,
    data: TagCreate,
    if_match: IfMatch = None,
) -> Response:
    """Every field is set: an absent `slug` is generated from the name again."""
    check_if_match(if_match, tag.version)
    await service.replace(session, tag, data)
    await session.commit()
    return await _one(session, tag)


@router.patch(
    "/{tag_id}",
    response_model=TagPublic,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Change a tag",
)
async def update_tag(
    session: SessionDep,
    _: EditorPrincipal,
    tag: TagDep,
    data: TagUpdate,
    if_match: IfMatch = None,
) -> Response:
    """Only the fields sent change."""
    check_if_match(if_match, tag.version)
    await service.update(session, tag, data)
    await session.commit()
    return await _one(session, tag)


@router.delete(
    "/{tag_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 412, 422),
    summary="Delete a tag",
)
async def delete_tag(
    session: SessionDep, _: EditorPrincipal, tag: TagDep, if_match: IfMatch = None
) -> Response:
    """The tag comes off every article that has it."""
    check_if_match(if_match, tag.version)
    await service.delete(session, tag)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
