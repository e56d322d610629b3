"""The application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from app.articles.router import router as articles_router
from app.auth.router import router as auth_router
from app.categories.router import router as categories_router
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.docs import install_docs
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.http_cache import HttpCacheMiddleware
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.openapi import problem_content
from app.core.ratelimit import RateLimiter
from app.tags.router import router as tags_router
from app.users.authors import router as authors_router
from app.users.router import router as users_router

# Headers a browser client must be allowed to read from cross-origin responses.
EXPOSED_HEADERS = [
    "Link",
    "ETag",
    "Last-Modified",
    "Location",
    "X-Total-Count",
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]

DESCRIPTION = """
The REST API of a news website: articles, categories, tags and readers' comments.

Public reads need no token. Newsroom writes take `Authorization: Bearer <token>`, from
`POST /api/v1/auth/token` (log in) or a long-lived API token (`POST /api/v1/tokens`).
Every error is `application/problem+json` (RFC 9457).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.ratelimiter = RateLimiter(settings)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title=f"{settings.site_name} API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(categories_router)
    app.include_router(tags_router)
    app.include_router(articles_router)
    app.include_router(authors_router)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            "X-Request-ID",
        ],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(HttpCacheMiddleware, public_max_age=settings.public_max_age)
    # Outermost, so even CORS preflights and errors carry the request id and headers.
    app.add_middleware(RequestContextMiddleware, hsts=settings.hsts)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            problem_content(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
