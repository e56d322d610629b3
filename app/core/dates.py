"""Instants from query strings: a date or a time without a zone is on the site's clock."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.errors import InvalidInput


def parse_instant(value: str, zone: ZoneInfo, *, field: str) -> datetime:
    """`2017-11-24` is that day's start on the site's clock; `2017-11-24T12:53` too, at that
    time; `2017-11-24T08:23:00Z` is exact."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), zone)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            "Use a date (2017-11-24) or an ISO 8601 time.", field=field, location="query"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def day_bounds(value: str, zone: ZoneInfo, *, field: str) -> tuple[datetime, datetime]:
    """The start of that day on the site's clock and the start of the next."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("Use a date: 2017-11-24.", field=field, location="query") from None
    start = datetime.combine(day, time(), zone)
    return start, datetime.combine(day + timedelta(days=1), time(), zone)
