"""The page envelope every list returns, and its `Link` / `X-Total-Count` headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Self, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from app.core import urls

MAX_PER_PAGE = 100


T = TypeVar("T")


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching the query, on all pages.")
    page: int | None = Field(description="This page's number; null when walking by cursor.")
    per_page: int
    pages: int = Field(description="Number of pages at this `per_page`.")
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next items; null on the last page."
    )

    @classmethod
    def of(
        cls, items: Sequence[T], total: int, params: PageParams, next_cursor: str | None = None
    ) -> Self:
        return cls(
            items=list(items),
            total=total,
            page=params.page,
            per_page=params.per_page,
            pages=page_count(total, params.per_page),
            next_cursor=next_cursor,
        )


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    per_page: Annotated[
        int, Query(ge=1, le=MAX_PER_PAGE, description="Items per page (1–100).")
    ] = 10,
) -> PageParams:
    return PageParams(page=page, per_page=per_page)


def set_page_headers(
    request: Request,
    response: Response,
    *,
    total: int,
    params: PageParams,
    next_cursor: str | None = None,
) -> int:
    """Put RFC 8288 links and the total on the response. Links carry the route's declared
    parameters only, canonical order (`app.core.urls`), and follow the style the request
    used, so a client that keeps following `next` walks the list once and stops:

    - by `cursor`: `first`, and `next` (a cursor) unless this is the last page; a cursor
      walk only goes forward, so no `prev` or `last`;
    - by `page`: `first`, `prev`, `next` (a page number) unless this is the last page, `last`;
    - neither (the first page): as by page, except that `next` is a cursor where the route
      gives one, the cheaper walk however deep it goes.

    Returns the number of pages."""
    pages = page_count(total, params.per_page)
    by_cursor = bool(request.query_params.get("cursor"))
    by_page = "page" in request.query_params
    kept = [(k, v) for k, v in urls.request_query(request) if k not in ("page", "cursor")]
    root, varies = urls.base(request)
    path = quote(request.url.path)
    links = []

    def link(rel: str, name: str, value: str | int) -> None:
        query = sorted([*kept, (name, str(value))], key=lambda pair: pair[0])
        links.append(f'<{root}{path}?{urlencode(query, safe=",")}>; rel="{rel}"')

    link("first", "page", 1)
    if by_cursor:
        if next_cursor is not None:
            link("next", "cursor", next_cursor)
    else:
        if params.page > 1:
            link("prev", "page", min(params.page - 1, pages))
        if next_cursor is not None and not by_page:
            link("next", "cursor", next_cursor)
        elif params.page < pages:
            link("next", "page", params.page + 1)
        link("last", "page", pages)
    response.headers["Link"] = ", ".join(links)
    response.headers["X-Total-Count"] = str(total)
    if varies:
        response.headers["Vary"] = urls.VARY_FORWARDED
    return pages
