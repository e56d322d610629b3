"""Pages that explain each problem `type` the API answers with (RFC 9457 says a type URI
should resolve to documentation a person can read): `GET /problems/{name}`, and the index
at `GET /problems`. The catalogue is also where titles come from, so one type always has one
title, in sentence case."""

from __future__ import annotations

import html
from http import HTTPStatus

from fastapi import APIRouter, HTTPException
from starlette.responses import HTMLResponse

# name: (status, title, what it means and what to do)
CATALOGUE: dict[str, tuple[int, str, str]] = {
    "validation-error": (
        422,
        "Invalid input",
        "A field, query parameter or body failed validation. `errors` names each one with "
        "its location and a message; nothing was stored. Correct those and send again.",
    ),
    "unauthorized": (
        401,
        "Authentication required",
        "The request needs a bearer token, or the one sent is wrong, expired or revoked. "
        "Log in at `POST /api/v1/auth/token` (a form) or use an API token.",
    ),
    "forbidden": (
        403,
        "Forbidden",
        "The token is valid but its role or scopes do not allow this. Ask an admin for a "
        "role or a token with the scope named in `detail`.",
    ),
    "not-found": (
        404,
        "Not found",
        "Nothing public answers to this address or name. A draft, a scheduled article "
        "before its time and a filter naming an unknown slug all answer this.",
    ),
    "method-not-allowed": (
        405,
        "Method not allowed",
        "The address exists but not with this method; the OpenAPI document at "
        "`/openapi.json` lists the methods of each route.",
    ),
    "request-timeout": (
        408,
        "Request timeout",
        "The request's body did not arrive in time. Send it again, whole.",
    ),
    "conflict": (
        409,
        "Conflict",
        "The request clashes with what is stored: a slug, number or name already taken, "
        "an exact duplicate comment, or a category that still holds articles.",
    ),
    "precondition-failed": (
        412,
        "Precondition failed",
        "`If-Match` named a version that is no longer current: someone else changed the "
        "resource. Read it again, apply the change to the new version, and retry.",
    ),
    "payload-too-large": (
        413,
        "Payload too large",
        "The body is larger than the route allows (`detail` gives the limit).",
    ),
    "unsupported-media-type": (
        415,
        "Unsupported media type",
        "Writes take `application/json`; logging in and one-click unsubscribes take a form.",
    ),
    "unsupported-image": (
        415,
        "Unsupported image type",
        "The upload is an image, but of a type the media library does not take. It takes "
        "JPEG, PNG, WebP and GIF (and AVIF where the server reads it), identified by the "
        "file's content, never by its name or declared type.",
    ),
    "undecodable-image": (
        422,
        "The file is not a usable image",
        "The upload does not decode as an image, or is damaged or truncated. Nothing was "
        "stored; send the file again, whole.",
    ),
    "image-too-large": (
        422,
        "The image has too many pixels",
        "Decoded, the image would exceed the server's pixel limit (MEDIA_MAX_PIXELS, in "
        "`detail`), whatever its size in bytes: a guard against decompression bombs. Scale "
        "it down before uploading.",
    ),
    "cors-refused": (
        400,
        "Cross-origin request refused",
        "A browser's preflight asked for an origin, method or header the API does not allow "
        "from other sites. The site's origin must be in the API's `CORS_ORIGINS`.",
    ),
    "rate-limited": (
        429,
        "Too many requests",
        "A rate limit or flood control refused the request. `Retry-After` (and `detail`) "
        "give the seconds to wait; `RateLimit-*` headers tell where a client stands.",
    ),
    "comments-closed": (
        403,
        "Comments are closed",
        "The article no longer takes comments (closed by its editors or by its age).",
    ),
    "edit-window-closed": (
        403,
        "The edit window has closed",
        "A commenter's edit token only works for a while after posting; this one has expired.",
    ),
    "internal-error": (
        500,
        "Internal error",
        "Something failed on our side; it has been logged with the request id "
        "(`X-Request-ID`). Retrying later may work.",
    ),
    "service-unavailable": (
        503,
        "Service unavailable",
        "The database is unreachable or busy (a lock or statement took too long). Nothing "
        "was half-written; retry after `Retry-After` seconds.",
    ),
}


def title_of(name: str, status: int) -> str:
    """The title of a type; for one outside the catalogue, the status phrase in the same
    sentence case ("Method Not Allowed" → "Method not allowed")."""
    found = CATALOGUE.get(name)
    if found is not None:
        return found[1]
    phrase = HTTPStatus(status).phrase
    return phrase[:1] + phrase[1:].lower()


router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main>{content}</main></body></html>
"""


@router.get("/problems", response_class=HTMLResponse)
async def problem_index() -> HTMLResponse:
    rows = "".join(
        f'<li><a href="/problems/{name}">{html.escape(title)}</a> ({status})</li>'
        for name, (status, title, _) in CATALOGUE.items()
    )
    content = f"<h1>Problem types</h1><ul>{rows}</ul>"
    return HTMLResponse(_PAGE.format(title="Problem types", content=content))


@router.get("/problems/{problem}", response_class=HTMLResponse)
async def problem_page(problem: str) -> HTMLResponse:
    found = CATALOGUE.get(problem)
    if found is None:
        raise HTTPException(404, f"No problem type {problem!r}; see /problems.")
    status, title, text = found
    body = html.escape(text).replace("`", "")
    content = (
        f"<h1>{html.escape(title)}</h1><p>HTTP status {status}. {body}</p>"
        '<p><a href="/problems">All problem types</a></p>'
    )
    return HTMLResponse(_PAGE.format(title=html.escape(title), content=content))
