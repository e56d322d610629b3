"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.articles import schedule
from app.articles.memo import ListingMemo
from app.articles.reads import comment_count_refresher
from app.articles.router import router as articles_router
from app.auth.router import router as auth_router
from app.cache import keys
from app.cache.channel import Listener
from app.cache.clock import KeyClock
from app.cache.publish import Publisher
from app.cache.publish import bind as bind_publisher
from app.cache.store import AlwaysUp, EntryStore, ResponseCacheMiddleware, RouteTable
from app.categories.router import router as categories_router
from app.comments.router import privacy as privacy_router
from app.comments.router import router as comments_router
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.docs import install_docs
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.http_cache import HttpCacheMiddleware, stale_directives
from app.core.logging import configure_logging
from app.core.metrics import MetricsMiddleware
from app.core.metrics import process_exit as metrics_process_exit
from app.core.metrics import router as metrics_router
from app.core.middleware import (
    ProblemCORSMiddleware,
    RequestContextMiddleware,
    RequestGuardMiddleware,
)
from app.core.openapi import problem_content, trimmed_variants
from app.core.problems import router as problems_router
from app.core.ratelimit import RateLimiter
from app.core.refusals import RefusedWritesMiddleware
from app.core.security import Passwords
from app.feeds.router import router as feeds_router
from app.mail.router import router as mail_router
from app.media.router import files as media_files_router
from app.media.router import router as media_router
from app.media.service import Library
from app.outbox import worker as outbox_worker
from app.tags.router import router as tags_router
from app.users.authors import router as authors_router
from app.users.router import router as users_router
from app.webhooks.router import router as webhooks_router

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


# Room for an upload's form fields and multipart framing beside the file (MEDIA_MAX_BYTES).
MEDIA_FORM_BYTES = 65_536

# Public reads that the response cache may serve (anonymous GETs only).
CACHED_PREFIXES = (
    "/api/v1/articles",
    "/api/v1/categories",
    "/api/v1/tags",
    "/api/v1/authors",
    "/api/v1/comments",
    "/feeds/",
    "/sitemap",
)


async def _sweep(store: EntryStore) -> None:
    """Expired entries free their memory even when no request comes to push them out."""
    while True:
        await asyncio.sleep(max(1.0, min(10.0, store.ttl / 5)))
        store.sweep(time.monotonic())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    caching = settings.response_cache
    # On PostgreSQL every instance tells the others what it wrote, caching or not (a
    # worker-only instance, or one with RESPONSE_CACHE=false, still writes what they show).
    telling = not settings.is_sqlite
    clock = KeyClock(settings.cache_generation_file) if caching or telling else None
    store = (
        EntryStore(
            clock,
            max_bytes=settings.response_cache_max_mb << 20,
            ttl=settings.response_cache_ttl,
        )
        if clock is not None and caching
        else None
    )
    listener = (
        Listener(settings.database_url, clock, connect_timeout=settings.db_connect_timeout)
        if clock is not None and telling
        else None
    )
    publisher = Publisher(
        clock,
        notify=telling,
        cdn=settings.cdn_purge != "none",
        tell=listener.tell if listener is not None else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        # Reads have a pool of their own on PostgreSQL: writes held up (a burst of comments
        # waiting on their articles' row locks) never leave a reader without a connection.
        readers = (
            engine
            if settings.is_sqlite
            else create_engine(settings, pool_size=settings.db_read_pool_size)
        )
        app.state.read_engine = readers.execution_options(isolation_level="AUTOCOMMIT")
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.ratelimiter = RateLimiter(settings)
        app.state.passwords = Passwords(settings.password_hash_concurrency)
        wake = asyncio.Event()
        if publisher.cdn:
            publisher.after.append(lambda _names: wake.set())
        worker = outbox_worker.start(app.state.sessionmaker, settings, wake)
        bind_publisher(app.state.sessionmaker, publisher)
        tasks: list[asyncio.Task[None]] = []
        if listener is not None:
            tasks.append(asyncio.create_task(listener.run(), name="cache-listener"))
            # Serve from the cache only once invalidations from elsewhere can be heard.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.db_connect_timeout):
                    await listener.wait_first()
        if store is not None:
            tasks.append(asyncio.create_task(_sweep(store), name="cache-sweeper"))
        if clock is not None or publisher.cdn:
            watched = clock or KeyClock(settings.cache_generation_file)
            tasks.append(
                asyncio.create_task(
                    schedule.watch(
                        app.state.sessionmaker,
                        watched,
                        close_after_days=settings.comments_close_after_days,
                    ),
                    name="schedule-watch",
                )
            )
        # What is loaded by now (modules, routes, schemas) lives as long as the process:
        # out of the collector's generations, it is not walked again on every collection.
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await outbox_worker.stop(worker)
            await app.state.media.storage.aclose()
            await engine.dispose()
            if readers is not engine:
                await readers.dispose()
            metrics_process_exit()

    app = FastAPI(
        title=f"{settings.site_name} API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # Observability is /metrics and the JSON logs. FastAPI's own OpenTelemetry, on by
        # default, asks on every request whether a provider is configured: some 25 µs, a
        # third of a cache hit, for spans nobody collects.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.listing_memo = ListingMemo()
    app.state.media = Library(settings)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health_router)
    app.include_router(problems_router)
    app.include_router(metrics_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(categories_router)
    app.include_router(tags_router)
    app.include_router(articles_router)
    # Before the comments router, whose /comments/{comment_id} would take /comments/unsubscribe.
    app.include_router(mail_router)
    app.include_router(comments_router)
    app.include_router(privacy_router)
    app.include_router(authors_router)
    app.include_router(feeds_router)
    app.include_router(webhooks_router)
    app.include_router(media_router)
    app.include_router(media_files_router)

    app.router.redirect_slashes = False  # done by the 404 handler, without the Host header
    app.state.cache_clock = clock
    app.state.cache_store = store
    app.state.cache_listener = listener
    app.state.cache_publisher = publisher
    if store is not None:
        # Inside CORS (its headers depend on each request's Origin), outside everything else.
        app.add_middleware(
            ResponseCacheMiddleware,
            store=store,
            routes=RouteTable(app.routes, CACHED_PREFIXES),
            channel=listener if listener is not None else AlwaysUp(),
            refresher=comment_count_refresher(lambda: app.state.read_engine),
        )
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            "X-Request-ID",
            "X-Comment-Token",
        ],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(
        HttpCacheMiddleware,
        public_max_age=settings.public_max_age,
        stale=stale_directives(
            settings.public_stale_while_revalidate, settings.public_stale_if_error
        ),
        surrogate_max_age=settings.cdn_max_age if publisher.cdn else 0,
        labels=keys.outgoing(settings.cdn_purge),
    )
    app.add_middleware(
        RequestGuardMiddleware,
        max_body=settings.max_body_bytes,
        limits=[
            (
                re.compile(r"^/api/v1/(articles/\d+/)?comments"),
                settings.comment_max_body_bytes,
                None,
            ),
            # The file and the form around it.
            (
                re.compile(r"^/api/v1/media$"),
                settings.media_max_bytes + MEDIA_FORM_BYTES,
                settings.media_body_timeout_seconds,
            ),
        ],
        form_paths={
            # The usual first try at logging in: say what it takes, and what a long-lived
            # client should use instead.
            "/api/v1/auth/token": "Log in with an OAuth2 password form "
            "(application/x-www-form-urlencoded: username, password), not JSON. A script or a "
            "long-lived app should use an API token instead (POST /api/v1/tokens), which "
            "does not expire unless asked to.",
            "/api/v1/comments/unsubscribe": "Send the one-click unsubscribe as a form "
            "(application/x-www-form-urlencoded), not JSON.",
            "/api/v1/media": None,
        },
        body_timeout=settings.body_timeout_seconds,
    )
    if settings.refused_write_limit:
        app.add_middleware(
            RefusedWritesMiddleware,
            limit=settings.refused_write_limit,
            trusted_proxies=settings.trusted_proxies,
        )
    app.add_middleware(MetricsMiddleware)
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
            trimmed_variants(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
