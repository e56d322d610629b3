"""Dates and cursors from query strings, at the edges of what a calendar and a clock can hold:
each is answered (200 or a 422 naming the parameter), never a 500, on both databases and on
site clocks far ahead of and behind UTC."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.models import Role
from tests.factories import bearer, make_article, make_token, make_user
from tests.support import assert_problem

API = "/api/v1/articles"


def cursor(raw: bytes | object) -> str:
    data = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# The zones furthest ahead of and behind UTC, and one with a half-hour offset.
@pytest.fixture(params=["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kabul"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"site_timezone": request.param}


HOSTILE_INSTANTS = [
    "9999-12-31",
    "0001-01-01",
    "9999-12-31T23:59:59",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.999999-14:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+00:01",
    "2024-02-30",
    "2024-13-01T00:00:00Z",
    "+002024-01-01",
    "NaN",
    "",
]
HOSTILE_DATES = ["9999-12-31", "0001-01-01", "9999-12-30", "0001-01-02", "2024-02-30", "NaN"]
_LATE = "9999-12-31T23:59:59-14:00"
_AT = "2024-01-01T00:00:00+00:00"


def hostile_cursors(order: str) -> list[str]:
    """Cursors a client could forge for a date order: out-of-range instants, ids beyond
    32 bits or of the wrong type, values of the wrong type, JSON that is not an object,
    bytes that are not JSON or not base64."""
    o = order.encode()
    return [
        cursor({"o": order, "v": _LATE, "i": 1}),
        cursor({"o": order, "v": "0001-01-01T00:00:00+14:00", "i": 1}),
        cursor({"o": order, "v": _AT, "i": 2**31}),
        cursor(b'{"o": "' + o + b'", "v": "' + _AT.encode() + b'", "i": 1e30}'),
        cursor(b'{"o": "' + o + b'", "v": "' + _AT.encode() + b'", "i": ' + b"9" * 40 + b"}"),
        cursor({"o": order, "v": _AT, "i": -1}),
        cursor({"o": order, "v": _AT, "i": 0}),
        cursor({"o": order, "v": _AT, "i": True}),
        cursor({"o": order, "v": _AT, "i": "7"}),
        cursor({"o": order, "v": _AT, "i": 1.5}),
        cursor({"o": order, "v": "2024-01-01T00:00:00", "i": 1}),
        cursor({"o": order, "v": 1700000000, "i": 1}),
        cursor({"o": order, "v": None, "i": 1}),
        cursor({"o": [order], "v": _AT, "i": 1}),
        cursor({"o": order, "v": _AT}),
        cursor(b'{"o": "' + o + b'", "v": NaN, "i": 1}'),
        cursor(b'{"o": "' + o + b'", "v": "x", "i": 1e400}'),
        cursor([1, 2, 3]),
        cursor("a string"),
        cursor(42),
        cursor(None),
        cursor(b"\xff\xfe not utf-8"),
        "!!!not-base64!!!",
        "=" * 8,
    ]


HOSTILE_TITLE_CURSORS = [
    cursor({"o": "title", "v": "nul\x00inside", "i": 1}),
    cursor({"o": "title", "v": 12345, "i": 1}),
    cursor({"o": "title", "v": {"a": 1}, "i": 1}),
    cursor({"o": "title", "v": ["a"], "i": 1}),
    cursor({"o": "title", "v": "x" * 301, "i": 1}),
    cursor({"o": "title", "v": "ok", "i": 2**63}),
]


@pytest.fixture
async def published(session: AsyncSession) -> None:
    author = await make_user(session, role=Role.author)
    for _ in range(3):
        await make_article(session, author)


class TestHostileValues:
    @pytest.mark.parametrize("field", ["after", "before"])
    async def test_extreme_instants_are_answered(
        self, client: httpx.AsyncClient, published: None, field: str
    ) -> None:
        for value in HOSTILE_INSTANTS:
            response = await client.get(API, params={field: value})
            if response.status_code != 200:
                body = assert_problem(response, 422)
                assert field in {e["field"] for e in body["errors"]}, (value, body)

    async def test_extreme_days_are_answered(
        self, client: httpx.AsyncClient, published: None
    ) -> None:
        answers = {}
        for value in HOSTILE_DATES:
            response = await client.get(API, params={"date": value})
            answers[value] = response.status_code
            if response.status_code != 200:
                body = assert_problem(response, 422)
                assert "date" in {e["field"] for e in body["errors"]}, (value, body)
        # The day after 9999-12-31 is beyond any calendar: that day has no end to compare.
        assert answers["9999-12-31"] == answers["2024-02-30"] == answers["NaN"] == 422
        assert answers["9999-12-30"] == 200

    @pytest.mark.parametrize("order", ["-published_at", "published_at", "-updated_at"])
    async def test_crafted_cursors_are_a_422(
        self, client: httpx.AsyncClient, published: None, order: str
    ) -> None:
        for value in hostile_cursors(order):
            response = await client.get(API, params={"cursor": value, "order": order})
            body = assert_problem(response, 422)
            assert body["errors"][0]["field"] == "cursor", (value, body)

    async def test_crafted_title_cursors_are_a_422(
        self, client: httpx.AsyncClient, published: None
    ) -> None:
        for value in HOSTILE_TITLE_CURSORS:
            response = await client.get(API, params={"cursor": value, "order": "title"})
            body = assert_problem(response, 422)
            assert body["errors"][0]["field"] == "cursor", (value, body)

    async def test_real_cursors_still_walk(
        self, client: httpx.AsyncClient, published: None
    ) -> None:
        for order in ("-published_at", "published_at", "-updated_at", "title"):
            first = (await client.get(API, params={"per_page": 2, "order": order})).json()
            assert first["next_cursor"], order
            rest = await client.get(API, params={"cursor": first["next_cursor"], "order": order})
            assert rest.status_code == 200, rest.text
            assert len(rest.json()["items"]) == 1


class TestExtremeInstantsInBodies:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"comments_close_after_days": 30}

    @pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+14:00"])
    async def test_instants_beyond_utc_are_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession, value: str
    ) -> None:
        headers = bearer(await make_token(session, await make_user(session, role=Role.editor)))
        for field in ("published_at", "comments_close_at"):
            made = await client.post(
                API, json={"title": "Edge", "status": "published", field: value}, headers=headers
            )
            body = assert_problem(made, 422)
            assert field in {e["field"] for e in body["errors"]}
        article = await client.post(API, json={"title": "Edge"}, headers=headers)
        noted = await client.post(
            f"{API}/{article.json()['id']}/corrections",
            json={"text": "Fixed.", "noted_at": value},
            headers=headers,
        )
        assert "noted_at" in {e["field"] for e in assert_problem(noted, 422)["errors"]}

    async def test_an_article_near_the_end_of_the_calendar_still_reads(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        headers = bearer(await make_token(session, await make_user(session, role=Role.editor)))
        made = await client.post(
            API,
            json={"title": "Far", "status": "published", "published_at": "9999-12-30T00:00:00Z"},
            headers=headers,
        )
        assert made.status_code == 201, made.text
        read = await client.get(f"{API}/{made.json()['id']}", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["comments_close_at"] is None
