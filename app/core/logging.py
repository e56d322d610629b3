"""JSON log lines carrying the request id, rendered by structlog. Nothing here logs client
addresses, emails or tokens: the access log writes method, path (without the query), status
and duration.

Every line has the same shape, whoever logs it: stdlib loggers (uvicorn, `app.*`, with
fields passed as `extra={"fields": {...}}`) and structlog loggers (fields as keywords) both
end in structlog's `ProcessorFormatter`."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id:
        event["request_id"] = request_id
    return event


def _stdlib_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # The fields of `extra={"fields": {...}}` on a stdlib record, as top-level keys.
    record = event.get("_record")
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        event.update(fields)
    return event


def _shape(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # The keys this service has always written, first and under their old names.
    shaped: EventDict = {
        "ts": event.pop("ts", None),
        "level": event.pop("level", None),
        "logger": event.pop("logger", None),
        "msg": event.pop("event", ""),
    }
    if "exception" in event:
        event["exc"] = event.pop("exception")
    shaped.update(event)
    return shaped


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# Run on every entry, whether it came from structlog or from a stdlib logger.
SHARED: list[Processor] = [
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _add_request_id,
]


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    pass


def configure_logging(level: str) -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*SHARED, _stdlib_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _shape,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = _JsonHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace our own handler (apps can be created more than once), keep any other.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _JsonHandler)] + [handler]
    root.setLevel(level.upper())
    # Database drivers log statement parameters at DEBUG: readers' data must not reach logs.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO: a webhook's path and query are often its
    # secret. The outbox worker logs the delivery and webhook ids instead.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's access log prints the client address; ours (app.access) does not.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
