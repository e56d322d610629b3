from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security, status
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import RedirectResponse

from app.articles import reads, service, views
from app.articles.models import Article
from app.articles.schemas import (
    ArticleAdmin,
    ArticleCreate,
    ArticleDetail,
    ArticleListItem,
    ArticleReplace,
    ArticleUpdate,
    CorrectionCreate,
    CorrectionOut,
    RevisionOut,
    RevisionSummary,
)
from app.cache import keys
from app.core import urls
from app.core.config import app_settings
from app.core.dates import day_bounds, parse_instant
from app.core.db import SessionDep, read_only, utcnow
from app.core.errors import InvalidInput
from app.core.http_cache import IfMatch, check_if_match, http_date
from app.core.openapi import links, responses
from app.core.pagination import Page, PageParams, page_count, page_params, set_page_headers
from app.core.render import FieldsParam, json, parse_fields
from app.core.schemas import IdPath
from app.core.security import OptionalPrincipal, Principal, current_principal

router = APIRouter(prefix="/api/v1/articles", tags=["articles"])

Writer = Annotated[Principal, Security(current_principal, scopes=["articles:write"])]
MAX_Q = 200


async def article_query(
    request: Request,
    params: Annotated[PageParams, Depends(page_params)],
    category: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description="Category slug (with its subcategories); repeat for any of several.",
        ),
    ] = None,
    category_all: Annotated[
        list[str] | None, Query(max_length=20, description="In every one of these categories.")
    ] = None,
    category_exclude: Annotated[
        list[str] | None, Query(max_length=20, description="In none of these categories.")
    ] = None,
    tag: Annotated[
        list[str] | None, Query(max_length=20, description="Tag slug; any of them.")
    ] = None,
    tag_all: Annotated[
        list[str] | None, Query(max_length=20, description="All these tags.")
    ] = None,
    tag_exclude: Annotated[
        list[str] | None, Query(max_length=20, description="None of these tags.")
    ] = None,
    author: Annotated[list[str] | None, Query(max_length=20, description="Author slug.")] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Published after this date or time (site clock when no zone is given).",
        ),
    ] = None,
    before: Annotated[str | None, Query(max_length=40, description="Published before.")] = None,
    date: Annotated[
        str | None, Query(max_length=10, description="Published on this day (site clock).")
    ] = None,
    number: Annotated[int | None, Query(ge=1, le=2_000_000_000)] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_Q,
            description="Full-text search: title, kicker, excerpt and body.",
        ),
    ] = None,
    order: Annotated[
        Literal["-published_at", "published_at", "-updated_at", "title", "relevance"] | None,
        Query(description="Default: -published_at, or relevance with q."),
    ] = None,
    status_: Annotated[
        Literal["draft", "scheduled", "published", "archived", "any"] | None,
        Query(alias="status", description="Token holders: list unpublished articles too."),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=500, description="From `next_cursor`: keyset paging.")
    ] = None,
) -> service.ArticleQuery:
    zone = app_settings(request).zone
    query = service.ArticleQuery(
        category=category or [],
        category_all=category_all or [],
        category_exclude=category_exclude or [],
        tag=tag or [],
        tag_all=tag_all or [],
        tag_exclude=tag_exclude or [],
        author=author or [],
        number=number,
        q=q.strip() if q else None,
        order=order,
        status=status_,
        offset=params.offset,
        limit=params.per_page,
        cursor=cursor,
    )
    if cursor and params.page > 1:
        raise InvalidInput("Use either page or cursor.", field="cursor", location="query")
    if after:
        query.after = parse_instant(after, zone, field="after")
    if before:
        query.before = parse_instant(before, zone, field="before")
    if date:
        start, end = day_bounds(date, zone, field="date")
        query.since = start
        query.before = min(query.before, end) if query.before else end
    return query


@router.get(
    "",
    response_model=Page[ArticleListItem],
    responses=responses(401, 403, 404, 422),
    summary="List articles",
)
async def list_articles(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    query: Annotated[service.ArticleQuery, Depends(article_query)],
    params: Annotated[PageParams, Depends(page_params)],
    fields: FieldsParam = None,
) -> Response:
    """Published articles whose time has come, newest first. Filters combine (AND); a
    repeated filter means any of its values; one naming a category, tag or author that does
    not exist is a 404. Page with `page` + `per_page`, or walk with
    `cursor` (from `next_cursor`, stays fast however deep). Links also go in `Link`."""
    wanted = parse_fields(fields, ArticleListItem)
    memo = request.app.state.listing_memo

    async def listing(db: AsyncConnection) -> service.ArticlePage:
        return await service.list_articles(db, query, principal, memo)

    found = await read_only(request, listing)
    settings = app_settings(request)
    now = utcnow()
    response = json(
        Page[ArticleListItem](
            items=[views.list_item(a, settings, now) for a in found.items],
            total=found.total,
            page=None if query.cursor else params.page,
            per_page=params.per_page,
            pages=page_count(found.total, params.per_page),
            next_cursor=found.next_cursor,
        ),
        fields=wanted,
        list_fields=True,
    )
    set_page_headers(
        request, response, total=found.total, params=params, next_cursor=found.next_cursor
    )
    if found.items:
        response.headers["Last-Modified"] = http_date(max(a.updated_at for a in found.items))
    shown = [keys.LISTINGS]
    if query.q:
        shown.append(keys.SEARCH)
    if query.order == "-updated_at":
        shown.append(keys.ARTICLES)
    for item in found.items:
        shown += views.shown_keys(item)
    return keys.label(response, shown)


def _detail_response(
    request: Request,
    article: service.Shown,
    around: reads.Surroundings,
    now: datetime,
    *,
    admin: bool,
    wanted: set[str] | None,
    status_code: int = 200,
) -> Response:
    body = views.detail(article, around, app_settings(request), now, admin=admin)
    response = json(body, fields=wanted, version=article.version, status_code=status_code)
    response.headers["Last-Modified"] = http_date(article.updated_at)
    return keys.label(response, views.detail_keys(article, around))


async def _render_detail(
    request: Request,
    session: SessionDep,
    article: Article,
    principal: Principal | None,
    fields: str | None,
    status_code: int = 200,
) -> Response:
    now = utcnow()
    admin = _sees_drafts(principal)
    wanted = parse_fields(fields, ArticleAdmin if admin else ArticleDetail)
    db = await session.connection()
    around = await reads.surroundings(
        db, article.id, article.category_id, article.published_at, now
    )
    return _detail_response(
        request, article, around, now, admin=admin, wanted=wanted, status_code=status_code
    )


def _sees_drafts(principal: Principal | None) -> bool:
    return principal is not None and principal.can("articles:read")


async def _public_detail(
    request: Request, fields: str | None, *, by: str, key: int | str
) -> Response | None:
    """The reader's page through the read path; None when no public article has this key."""
    wanted = parse_fields(fields, ArticleDetail)
    now = utcnow()

    async def page(db: AsyncConnection) -> tuple[reads.ArticleRow, reads.Surroundings] | None:
        article = await reads.public_article(db, now, by=by, key=key)
        return None if article is None else (article, await reads.complete(db, article, now))

    found = await read_only(request, page)
    if found is None:
        return None
    return _detail_response(request, *found, now, admin=False, wanted=wanted)


async def _readable(session: SessionDep, principal: Principal | None, article_id: int) -> Article:
    article = await service.load(session, article_id)
    service.ensure_readable(article, principal, utcnow())
    return article


DETAIL_RESPONSES = responses(401, 404, 422)


@router.get(
    "/by-slug/{slug}",
    response_model=ArticleDetail,
    responses={**DETAIL_RESPONSES, 301: {"description": "A retired slug: see Location."}},
    summary="Read an article by slug",
)
async def read_by_slug(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    slug: Annotated[str, Path(max_length=200)],
    fields: FieldsParam = None,
) -> Response:
    """An old slug answers 301 to the article's current address."""
    if not _sees_drafts(principal):
        found = await _public_detail(request, fields, by="slug", key=slug)
        if found is not None:
            return found
    article_id, current = await service.id_by_slug(session, slug)
    article = await _readable(session, principal, article_id)
    if current is not None:
        target, varies = urls.address(
            request, f"/api/v1/articles/by-slug/{quote(current)}", urls.request_query(request)
        )
        moved = RedirectResponse(target, status_code=status.HTTP_301_MOVED_PERMANENTLY)
        if varies:
            moved.headers["Vary"] = urls.VARY_FORWARDED
        return moved
    return await _render_detail(request, session, article, principal, fields)


@router.get(
    "/by-number/{number}",
    response_model=ArticleDetail,
    responses=DETAIL_RESPONSES,
    summary="Read an article by its public number",
)
async def read_by_number(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    number: IdPath,
    fields: FieldsParam = None,
) -> Response:
    if not _sees_drafts(principal):
        found = await _public_detail(request, fields, by="number", key=number)
        if found is None:
            raise service.hidden(f"number {number}")
        return found
    article = await _readable(session, principal, await service.id_by_number(session, number))
    return await _render_detail(request, session, article, principal, fields)


@router.get(
    "/{article_id}",
    response_model=ArticleDetail,
    responses=DETAIL_RESPONSES,
    operation_id="readArticle",
    summary="Read an article",
)
async def read_article(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    article_id: IdPath,
    fields: FieldsParam = None,
) -> Response:
    """The whole article with breadcrumbs, tags, corrections and its neighbours. Token
    holders who may read drafts get the editing view (with `version`)."""
    if not _sees_drafts(principal):
        found = await _public_detail(request, fields, by="id", key=article_id)
        if found is None:
            raise service.hidden(article_id)
        return found
    article = await _readable(session, principal, article_id)
    return await _render_detail(request, session, article, principal, fields)


WRITE_RESPONSES = responses(401, 403, 404, 409, 412, 422)


@router.post(
    "",
    response_model=ArticleAdmin,
    status_code=status.HTTP_201_CREATED,
    responses={
        **responses(401, 403, 409, 422),
        **links(
            201,
            ReadArticle=("readArticle", "article_id=$response.body#/id"),
            UpdateArticle=("updateArticle", "article_id=$response.body#/id"),
            CommentOnArticle=("postComment", "article_id=$response.body#/id"),
            ListComments=("listComments", "article_id=$response.body#/id"),
            DeleteArticle=("deleteArticle", "article_id=$response.body#/id"),
        ),
    },
    operation_id="createArticle",
    summary="Create an article",
)
async def create_article(
    request: Request, session: SessionDep, principal: Writer, data: ArticleCreate
) -> Response:
    embeds = app_settings(request).embed_providers
    article = await service.create(session, data, principal, embeds)
    await session.commit()
    article = await service.load(session, article.id)
    response = await _render_detail(request, session, article, principal, None, 201)
    response.headers["Location"] = f"/api/v1/articles/{article.id}"
    return response


async def _writable(
    session: SessionDep, principal: Writer, article_id: IdPath, if_match: str | None
) -> Article:
    article = await service.load(session, article_id)
    service.ensure_writable(article, principal, utcnow())
    check_if_match(if_match, article.version)
    return article


async def _save(
    request: Request, session: SessionDep, principal: Principal, article: Article
) -> Response:
    await session.commit()
    article = await service.load(session, article.id)
    return await _render_detail(request, session, article, principal, None)


@router.put(
    "/{article_id}",
    response_model=ArticleAdmin,
    responses=WRITE_RESPONSES,
    summary="Replace an article",
)
async def replace_article(
    request: Request,
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    data: ArticleReplace,
    if_match: IfMatch = None,
) -> Response:
    article = await _writable(session, principal, article_id, if_match)
    embeds = app_settings(request).embed_providers
    await service.update(session, article, service.replacement(data), principal, embeds)
    return await _save(request, session, principal, article)


@router.patch(
    "/{article_id}",
    response_model=ArticleAdmin,
    responses=WRITE_RESPONSES,
    operation_id="updateArticle",
    summary="Change an article",
)
async def update_article(
    request: Request,
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    data: ArticleUpdate,
    if_match: IfMatch = None,
) -> Response:
    """Only the fields sent change. Send `If-Match` with the ETag you read so that a
    colleague's change in between is not overwritten (412 if there was one)."""
    article = await _writable(session, principal, article_id, if_match)
    embeds = app_settings(request).embed_providers
    await service.update(session, article, service.partial(data), principal, embeds)
    return await _save(request, session, principal, article)


@router.delete(
    "/{article_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 412),
    operation_id="deleteArticle",
    summary="Delete an article",
)
async def delete_article(
    session: SessionDep, principal: Writer, article_id: IdPath, if_match: IfMatch = None
) -> Response:
    article = await _writable(session, principal, article_id, if_match)
    await service.remove(session, article, principal)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{article_id}/corrections",
    response_model=CorrectionOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_RESPONSES,
    summary="Add a correction or update note",
)
async def add_correction(
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    data: CorrectionCreate,
    if_match: IfMatch = None,
) -> CorrectionOut:
    """A dated note shown under the article: a correction of an error, or an update."""
    article = await _writable(session, principal, article_id, if_match)
    correction = await service.add_correction(session, article, data, principal)
    await session.commit()
    return CorrectionOut.model_validate(correction)


@router.delete(
    "/{article_id}/corrections/{correction_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 412),
    summary="Remove a correction note",
)
async def remove_correction(
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    correction_id: IdPath,
    if_match: IfMatch = None,
) -> Response:
    article = await _writable(session, principal, article_id, if_match)
    await service.remove_correction(session, article, correction_id, principal)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{article_id}/revisions",
    response_model=Page[RevisionSummary],
    responses=responses(401, 403, 404, 422),
    summary="List an article's revisions",
)
async def list_revisions(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    params: Annotated[PageParams, Depends(page_params)],
) -> Page[RevisionSummary]:
    """Earlier versions of the title, kicker, excerpt and body, newest first."""
    article = await _writable(session, principal, article_id, None)
    rows, total = await service.revisions(
        session, article, offset=params.offset, limit=params.per_page
    )
    set_page_headers(request, response, total=total, params=params)
    return Page[RevisionSummary].of(
        [RevisionSummary.model_validate(r) for r in rows], total, params
    )


@router.get(
    "/{article_id}/revisions/{revision_id}",
    response_model=RevisionOut,
    responses=responses(401, 403, 404),
    summary="Read a revision",
)
async def read_revision(
    session: SessionDep, principal: Writer, article_id: IdPath, revision_id: IdPath
) -> RevisionOut:
    article = await _writable(session, principal, article_id, None)
    return RevisionOut.model_validate(await service.revision(session, article, revision_id))


@router.post(
    "/{article_id}/revisions/{revision_id}/restore",
    response_model=ArticleAdmin,
    responses=WRITE_RESPONSES,
    summary="Restore a revision",
)
async def restore_revision(
    request: Request,
    session: SessionDep,
    principal: Writer,
    article_id: IdPath,
    revision_id: IdPath,
    if_match: IfMatch = None,
) -> Response:
    """The restored text becomes current; what it replaces is kept as a new revision."""
    article = await _writable(session, principal, article_id, if_match)
    await service.restore(session, article, revision_id, principal)
    return await _save(request, session, principal, article)
