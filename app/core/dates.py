"""Instants from query strings: a date or a time without a zone is on the site's clock.

Every instant accepted here can be stored and compared: it exists in UTC (years 1 to 9999,
as Python and both databases' drivers count them). A time that only exists on a clock far
from UTC (9999-12-31T23:59:59-05:00 is in the year 10000 in UTC), or a day whose end does not
exist (9999-12-31), is a 422 naming the field, never an overflow deep in a query."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.errors import InvalidInput

OUT_OF_RANGE = "Out of range: times must fall within the years 1 to 9999 in UTC."


def in_utc(moment: datetime) -> datetime:
    """`moment` in UTC; ValueError when UTC has no such instant."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None


def parse_instant(value: str, zone: ZoneInfo, *, field: str) -> datetime:
    """`2017-11-24` is that day's start on the site's clock; `2017-11-24T12:53` too, at that
    time; `2017-11-24T08:23:00Z` is exact."""
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(), zone)
        else:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise InvalidInput(
            "Use a date (2017-11-24) or an ISO 8601 time.", field=field, location="query"
        ) from None
    try:
        return in_utc(moment)
    except ValueError:
        raise InvalidInput(OUT_OF_RANGE, field=field, location="query") from None


def day_bounds(value: str, zone: ZoneInfo, *, field: str) -> tuple[datetime, datetime]:
    """The start of that day on the site's clock and the start of the next."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("Use a date: 2017-11-24.", field=field, location="query") from None
    try:
        start = in_utc(datetime.combine(day, time(), zone))
        return start, in_utc(datetime.combine(day + timedelta(days=1), time(), zone))
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        raise InvalidInput(OUT_OF_RANGE, field=field, location="query") from None
