"""Prometheus metrics at `/metrics`: requests and latency by route template and status,
database pool use, and the outcomes of readers' comments.

With several worker processes, set `PROMETHEUS_MULTIPROC_DIR` to an empty directory shared
by the workers of one machine (prometheus-client's multiprocess mode): each worker writes its
samples there and `/metrics` answers for all of them. Without it, the in-process registry."""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import iter_route_contexts
from fastapi.security import SecurityScopes
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import app_settings
from app.core.security import OptionalPrincipal, current_principal
from app.core.security import Scope as TokenScope

UNMATCHED = "unmatched"
COMMENT_POST = "/api/v1/articles/{article_id}/comments"

REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# livesum: with several workers, the machine's total over the workers still running.
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out", "Database connections in use.", multiprocess_mode="livesum"
)
POOL_SIZE = Gauge(
    "db_pool_size", "Database connections the pool keeps.", multiprocess_mode="livesum"
)
COMMENTS = Counter(
    "comments_posted_total",
    "Comment posts by outcome (rejected: any 4xx answer).",
    ["outcome"],
)
for _outcome in ("approved", "pending", "spam", "rejected"):
    COMMENTS.labels(_outcome)


def comment_outcome(outcome: str) -> None:
    COMMENTS.labels(outcome).inc()


Table = list[tuple[re.Pattern[str], set[str] | None, str]]
# Unrouted paths whose route template is remembered (the memo is dropped when full).
SEEN_PATHS = 10_000


def _route_table(app: Any) -> Table:
    table: Table = []
    for context in iter_route_contexts(getattr(app, "routes", [])):
        pattern = getattr(context, "path_regex", None)
        if isinstance(pattern, re.Pattern) and context.path:
            table.append((pattern, context.methods, context.path))
    return table


def _match(table: Table, method: str, path: str) -> str:
    other_method = UNMATCHED
    for pattern, methods, template in table:
        if pattern.match(path):
            if methods is None or method in methods:
                return template
            other_method = template
    return other_method


def _observe_pool(app: Any) -> None:
    engine = getattr(getattr(app, "state", None), "engine", None)
    pool = getattr(engine, "pool", None)
    if pool is None:
        return
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out):
        POOL_CHECKED_OUT.set(checked_out())
    if callable(size):
        POOL_SIZE.set(size())


class MetricsMiddleware:
    """Counts and times every HTTP request by the route template it reached (never the raw
    path: ids would make a series per article), and rejected comment posts (4xx)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.table: Table | None = None
        self.seen: dict[tuple[str, str], str] = {}
        # (method, route, status) -> its two series: `labels()` costs a hit a tenth of its
        # time; the combinations are few (routes are templates), so they are kept.
        self.series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        # Not routed (refused by a middleware, or served from the response cache): match
        # here, remembering the answer for paths seen often (cache hits repeat).
        key = (scope["method"], scope["path"])
        found = self.seen.get(key)
        if found is None:
            if self.table is None:
                self.table = _route_table(scope.get("app"))
            found = _match(self.table, *key)
            if len(self.seen) >= SEEN_PATHS:
                self.seen.clear()
            self.seen[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._route(scope)
            method = scope["method"]
            labels = (method, route, str(status))
            series = self.series.get(labels)
            if series is None:
                series = self.series[labels] = (
                    REQUESTS.labels(*labels),
                    LATENCY.labels(*labels),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
            if method == "POST" and route == COMMENT_POST and 400 <= status < 500:
                comment_outcome("rejected")


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def process_exit() -> None:
    """Drop this worker's live gauges from the shared directory (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


router = APIRouter()


async def scraper(request: Request, principal: OptionalPrincipal) -> None:
    """A token with metrics:read, unless METRICS_PUBLIC: the counts tell a spammer whether
    their comment went to spam, and the traffic tells anyone what is read."""
    if not app_settings(request).metrics_public:
        await current_principal(SecurityScopes([TokenScope.metrics_read]), principal)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(scraper)])
def metrics(request: Request) -> Response:
    _observe_pool(request.app)
    return Response(
        generate_latest(_registry()),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
