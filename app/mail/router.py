from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.core.config import app_settings
from app.core.db import SessionDep
from app.core.http_cache import PRIVATE
from app.core.openapi import responses
from app.mail import service

router = APIRouter(prefix="/api/v1/comments", tags=["comments"])

Token = Annotated[
    str,
    Query(min_length=20, max_length=100, description="The token from the email's link."),
]


async def _unsubscribe(request: Request, session: SessionDep, token: str) -> HTMLResponse:
    await service.unsubscribe(session, token)
    await session.commit()
    settings = app_settings(request)
    site = escape(settings.site_name)
    page = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Unsubscribed – {site}</title></head><body>"
        f"<p>Done: {site} will not email you about replies to your comments any more.</p>"
        "</body></html>"
    )
    return HTMLResponse(page, headers={"Cache-Control": PRIVATE})


@router.get(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=responses(404, 422),
    summary="Stop reply notifications (link)",
)
async def unsubscribe_link(request: Request, session: SessionDep, token: Token) -> HTMLResponse:
    """The link in every reply notification: stops reply emails for every comment of the
    address it was sent to, and answers a short confirmation page."""
    return await _unsubscribe(request, session, token)


@router.post(
    "/unsubscribe",
    response_class=HTMLResponse,
    responses=responses(404, 422),
    summary="Stop reply notifications (one click)",
)
async def unsubscribe_one_click(
    request: Request, session: SessionDep, token: Token
) -> HTMLResponse:
    """RFC 8058 one-click unsubscribe: mail clients POST `List-Unsubscribe=One-Click` to the
    `List-Unsubscribe` address (the token is in its query string; the body is ignored)."""
    return await _unsubscribe(request, session, token)
