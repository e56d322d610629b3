"""One error shape everywhere: RFC 9457 `application/problem+json`.

Services raise `DomainError` subclasses; the handlers here are the only place that turns
errors into HTTP responses, so no stack trace, SQL or private value reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from app.core import urls
from app.core.problems import title_of

log = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field at fault, e.g. `title`.")
    location: str = Field(description="`body`, `query`, `path`, `header` or `cookie`.")
    message: str
    type: str = Field(description="Machine-readable error code, e.g. `missing`.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="URI reference identifying the problem type.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        None, description="For validation problems: every field at fault."
    )


def problem_response(
    status: int,
    *,
    type_: str,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": type_ if ":" in type_ or type_.startswith("/") else PROBLEM_BASE + type_,
        "title": title or title_of(type_, status),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


class DomainError(Exception):
    """An expected failure with an HTTP meaning; raised by services, rendered here."""

    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        field: str | None = None,
        location: str = "body",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.field = field
        self.location = location
        self.headers = headers or {}

    def errors(self) -> list[dict[str, Any]] | None:
        if self.field is None:
            return None
        return [
            {
                "field": self.field,
                "location": self.location,
                "message": self.detail or self.title,
                "type": self.type,
            }
        ]


class NotFound(DomainError):
    status = 404
    type = "not-found"
    title = title_of(type, status)


class Unauthorized(DomainError):
    status = 401
    type = "unauthorized"
    title = title_of(type, status)

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    status = 403
    type = "forbidden"
    title = title_of(type, status)


class Conflict(DomainError):
    status = 409
    type = "conflict"
    title = title_of(type, status)


class PreconditionFailed(DomainError):
    status = 412
    type = "precondition-failed"
    title = title_of(type, status)


class InvalidInput(DomainError):
    status = 422
    type = "validation-error"
    title = title_of(type, status)


class TooManyRequests(DomainError):
    status = 429
    type = "rate-limited"
    title = title_of(type, status)

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(DomainError):
    status = 503
    type = "service-unavailable"
    title = title_of(type, status)

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


def _field_path(loc: tuple[Any, ...]) -> tuple[str, str]:
    location = str(loc[0]) if loc else "body"
    rest = [str(part) for part in loc[1:]]
    return location, ".".join(rest) or location


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors: dict[tuple[str, ...], dict[str, Any]] = {}
    for error in exc.errors():
        location, field = _field_path(tuple(error.get("loc", ())))
        # The offending input is deliberately left out: it may be an email or a password.
        found = {
            "field": field,
            "location": location,
            "message": str(error.get("msg", "invalid")),
            "type": str(error.get("type", "invalid")),
        }
        # Once each: a parameter that two of a route's dependencies read fails in both.
        errors.setdefault(tuple(found.values()), found)
    return list(errors.values())


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(
        exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors(),
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(
        422,
        type_="validation-error",
        detail=f"Check these fields: {fields}." if fields else None,
        errors=errors,
    )


_HTTP_TYPES = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 400 and detail == "There was an error parsing the body":
        # Bytes that are not JSON (or not UTF-8) are invalid input like any other.
        return problem_response(
            422,
            type_="validation-error",
            detail="The body is not valid JSON.",
            errors=[
                {
                    "field": "body",
                    "location": "body",
                    "message": "not valid JSON",
                    "type": "json_invalid",
                }
            ],
        )
    if status == 404 and detail == "Not Found":
        twin = _slash_twin(request)
        if twin is not None:
            # Starlette's own redirect would take its address from the Host header.
            target, varies = urls.address(request, quote(twin))
            if request.url.query:
                target += "?" + request.url.query
            moved = RedirectResponse(target, status_code=307)
            if varies:
                moved.headers["Vary"] = urls.VARY_FORWARDED
            return moved
        detail = f"No resource at {request.url.path}."
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    return problem_response(
        status,
        type_=_HTTP_TYPES.get(status, "about:blank"),
        detail=detail,
        headers=headers,
    )


def _slash_twin(request: Request) -> str | None:
    """The same path with its trailing slash toggled, when a route serves that one."""
    path: str = request.scope["path"]
    if path == "/":
        return None
    twin = path[:-1] if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": twin}
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            return twin
    return None


def _unavailable(detail: str) -> Response:
    return problem_response(
        503,
        type_="service-unavailable",
        detail=detail,
        headers={"Retry-After": "5"},
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # Logged without the statement or parameters: they can carry readers' data.
    log.warning("database unavailable: %s", type(exc).__name__)
    return _unavailable("The database cannot be reached; try again shortly.")


async def _stale(request: Request, exc: Exception) -> Response:
    # Another writer committed first (the row's version moved under us).
    return await _domain_error(
        request,
        PreconditionFailed(
            "The resource was changed by someone else meanwhile; read it again and retry."
        ),
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        500,
        type_="internal-error",
        detail="An unexpected error occurred; it has been logged.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    app.add_exception_handler(TimeoutError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(StaleDataError, _stale)
    app.add_exception_handler(Exception, _unexpected)


# PostgreSQL gave up on a statement that would have gone through on a calmer server: a lock
# not granted within lock_timeout, the statement_timeout, a deadlock, a serialization
# failure. Worth retrying, like an unreachable database, so the same answer.
_BUSY_SQLSTATES = frozenset({"55P03", "57014", "40P01", "40001"})


async def _dbapi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        return await _database_unavailable(request, exc)
    if getattr(exc.orig, "sqlstate", None) in _BUSY_SQLSTATES:
        log.warning("database busy: %s", type(exc.orig).__name__)
        return _unavailable("The database is too busy to answer in time; try again shortly.")
    return await _unexpected(request, exc)
