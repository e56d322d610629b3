from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import keys
from app.categories import service
from app.categories.models import Category
from app.categories.schemas import (
    CategoryCreate,
    CategoryDetail,
    CategoryNode,
    CategoryPublic,
    CategoryRef,
    CategoryUpdate,
)
from app.core.db import SessionDep
from app.core.http_cache import IfMatch, check_if_match
from app.core.openapi import responses
from app.core.pagination import MAX_PER_PAGE, Page, PageParams, set_page_headers
from app.core.render import FieldsParam, json, parse_fields, trim_tree
from app.core.schemas import MAX_ID, IdPath
from app.core.security import Principal, current_principal

router = APIRouter(prefix="/api/v1/categories", tags=["categories"])

EditorPrincipal = Annotated[Principal, Security(current_principal, scopes=["categories:write"])]


async def category_page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    per_page: Annotated[
        int, Query(ge=1, le=MAX_PER_PAGE, description="Items per page (1–100).")
    ] = MAX_PER_PAGE,
) -> PageParams:
    # A site has few sections: one page of 100 is usually all of them.
    return PageParams(page=page, per_page=per_page)


async def _category(session: SessionDep, category_id: IdPath) -> Category:
    return await service.get(session, category_id)


CategoryDep = Annotated[Category, Depends(_category)]
NONE = service.Counts()


def _public_fields(category: Category, counts: service.Counts) -> dict[str, Any]:
    return {
        "id": category.id,
        "name": category.name,
        "slug": category.slug,
        "description": category.description,
        "parent_id": category.parent_id,
        "article_count": counts.total,
        "own_article_count": counts.own,
        "created_at": category.created_at,
        "updated_at": category.updated_at,
    }


def _tree(categories: list[Category], counts: dict[int, service.Counts]) -> list[CategoryNode]:
    below: dict[int | None, list[Category]] = defaultdict(list)
    for category in categories:
        below[category.parent_id].append(category)

    def nodes(parent_id: int | None) -> list[CategoryNode]:
        return [
            CategoryNode(**_public_fields(c, counts.get(c.id, NONE)), children=nodes(c.id))
            for c in below.get(parent_id, [])
        ]

    return nodes(None)


async def _detail(
    session: AsyncSession,
    category: Category,
    *,
    fields: set[str] | None = None,
    status_code: int = status.HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response:
    counts = await service.article_counts(session, [category.id])
    model = CategoryDetail(
        **_public_fields(category, counts.get(category.id, NONE)),
        path=[CategoryRef.model_validate(c) for c in await service.path(session, category)],
        children=[CategoryRef.model_validate(c) for c in await service.children(session, category)],
    )
    response = json(
        model, fields=fields, status_code=status_code, headers=headers, version=category.version
    )
    shown = [category.id, *(c.id for c in model.path), *(c.id for c in model.children)]
    return keys.label(response, [keys.CATEGORIES, keys.LISTINGS, *map(keys.category, shown)])


@router.get(
    "",
    response_model=Page[CategoryPublic] | Page[CategoryNode],
    responses=responses(422),
    summary="List categories",
)
async def list_categories(
    request: Request,
    response: Response,
    session: SessionDep,
    params: Annotated[PageParams, Depends(category_page_params)],
    tree: Annotated[
        bool,
        Query(
            description="true: every category at once, top-level ones in `items`, each with "
            "its subcategories nested in `children` (`page` and `per_page` are ignored)."
        ),
    ] = False,
    fields: FieldsParam = None,
) -> Response:
    """The site's sections, ordered by name, each with its number of published articles:
    `article_count` counts those below it too, as `?category=` shows them;
    `own_article_count` those filed in it directly."""
    if tree:
        wanted = parse_fields(fields, CategoryNode)
        categories = await service.list_all(session)
        total = len(categories)
        set_page_headers(
            request, response, total=total, params=PageParams(page=1, per_page=max(1, total))
        )
        nodes = _tree(categories, await service.article_counts(session))
        page = Page[CategoryNode](items=nodes, total=total, page=1, per_page=total, pages=1)
        shown = [keys.CATEGORIES, keys.LISTINGS, *(keys.category(c.id) for c in categories)]
        if wanted is None:
            return keys.label(json(page, headers=dict(response.headers)), shown)
        trimmed = [trim_tree(node.model_dump(mode="json"), wanted, "children") for node in nodes]
        return keys.label(
            json(
                Page[dict[str, Any]](**page.model_dump(exclude={"items"}), items=trimmed),
                headers=dict(response.headers),
            ),
            shown,
        )

    wanted = parse_fields(fields, CategoryPublic)
    rows, total = await service.list_page(session, offset=params.offset, limit=params.per_page)
    counts = await service.article_counts(session, [c.id for c in rows])
    set_page_headers(request, response, total=total, params=params)
    listing = Page[CategoryPublic].of(
        [CategoryPublic(**_public_fields(c, counts.get(c.id, NONE))) for c in rows], total, params
    )
    return keys.label(
        json(listing, fields=wanted, list_fields=True, headers=dict(response.headers)),
        [keys.CATEGORIES, keys.LISTINGS, *(keys.category(c.id) for c in rows)],
    )


@router.get(
    "/by-slug/{slug}",
    response_model=CategoryDetail,
    responses=responses(404, 422),
    summary="Read a category by slug",
)
async def read_category_by_slug(
    session: SessionDep, slug: str, fields: FieldsParam = None
) -> Response:
    """One category with its breadcrumbs (`path`) and direct subcategories (`children`)."""
    wanted = parse_fields(fields, CategoryDetail)
    return await _detail(session, await service.by_slug(session, slug), fields=wanted)


@router.get(
    "/{category_id}",
    response_model=CategoryDetail,
    responses=responses(404, 422),
    summary="Read a category",
)
async def read_category(
    session: SessionDep, category: CategoryDep, fields: FieldsParam = None
) -> Response:
    """One category with its breadcrumbs (`path`) and direct subcategories (`children`).
    The ETag goes in `If-Match` of a later `PUT`, `PATCH` or `DELETE`."""
    return await _detail(session, category, fields=parse_fields(fields, CategoryDetail))


@router.post(
    "",
    response_model=CategoryDetail,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
    summary="Create a category",
)
async def create_category(
    session: SessionDep, _: EditorPrincipal, data: CategoryCreate
) -> Response:
    """Without `slug`, one is made from the name (transliterated: "Ölçüm" → "olcum")."""
    category = await service.create(session, data)
    await session.commit()
    location = {"Location": f"/api/v1/categories/{category.id}"}
    return await _detail(session, category, status_code=status.HTTP_201_CREATED, headers=location)


@router.put(
    "/{category_id}",
    response_model=CategoryDetail,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Replace a category",
)
async def replace_category(
    session: SessionDep,
    _: EditorPrincipal,
    category: CategoryDep,
    data: CategoryCreate,
    if_match: IfMatch = None,
) -> Response:
    """Every field is set: an absent `description` or `parent_id` is cleared, and an absent
    `slug` is generated from the name again. Use `PATCH` to change some fields only."""
    check_if_match(if_match, category.version)
    await service.replace(session, category, data)
    await session.commit()
    return await _detail(session, category)


@router.patch(
    "/{category_id}",
    response_model=CategoryDetail,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Change a category",
)
async def update_category(
    session: SessionDep,
    _: EditorPrincipal,
    category: CategoryDep,
    data: CategoryUpdate,
    if_match: IfMatch = None,
) -> Response:
    """Only the fields sent change; `parent_id: null` makes it a top-level category."""
    check_if_match(if_match, category.version)
    await service.update(session, category, data)
    await session.commit()
    return await _detail(session, category)


@router.delete(
    "/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Delete a category",
)
async def delete_category(
    session: SessionDep,
    _: EditorPrincipal,
    category: CategoryDep,
    move_to: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Move this category's articles to this category."),
    ] = None,
    if_match: IfMatch = None,
) -> Response:
    """A category that still has articles is refused (409) unless `move_to` is given.
    Its subcategories move up to its parent."""
    check_if_match(if_match, category.version)
    await service.delete(session, category, move_to=move_to)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
