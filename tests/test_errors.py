"""One error shape everywhere, request ids, security headers and CORS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.problems import CATALOGUE
from app.users.models import Role
from tests.factories import bearer, make_token, make_user
from tests.support import assert_problem


class TestProblemDetails:
    async def test_malformed_json_body_names_the_problem(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        response = await client.post(
            "/api/v1/users",
            content=b'{"username": "x", ',
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["location"] == "body"

    async def test_invalid_fields_are_each_listed(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        response = await client.post(
            "/api/v1/users",
            json={"username": "a", "password": "sEcr3t", "role": "king"},
            headers=bearer(token),
        )
        body = assert_problem(response, 422)
        assert {e["field"] for e in body["errors"]} == {"username", "password", "role"}
        assert "sEcr3t" not in response.text, "submitted values are never echoed"

    async def test_unknown_route_is_a_problem(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/api/v1/no-such-thing"), 404)
        assert body["type"].endswith("not-found")

    async def test_wrong_method_is_a_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/healthz")
        body = assert_problem(response, 405)
        assert "DELETE" in body["detail"]
        assert "GET" in response.headers["allow"]

    async def test_bad_query_parameter_is_a_problem(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        response = await client.get("/api/v1/users?per_page=101", headers=bearer(token))
        body = assert_problem(response, 422)
        assert body["errors"][0] == {
            "field": "per_page",
            "location": "query",
            "message": body["errors"][0]["message"],
            "type": "less_than_equal",
        }


class TestRequestContext:
    async def test_every_response_carries_a_request_id(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/healthz")
        second = await client.get("/nowhere")
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        assert len(first.headers["x-request-id"]) >= 16

    async def test_a_sane_incoming_request_id_is_kept(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "edge-42.abc"})
        assert response.headers["x-request-id"] == "edge-42.abc"
        hostile = await client.get("/healthz", headers={"X-Request-ID": "a b\tc<script>"})
        assert hostile.headers["x-request-id"] != "a b\tc<script>"

    async def test_security_headers_on_every_response(self, client: httpx.AsyncClient) -> None:
        for response in (await client.get("/healthz"), await client.get("/missing")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["referrer-policy"]
            assert "strict-transport-security" not in response.headers


class TestCorsClosedByDefault:
    async def test_no_origin_is_allowed_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers


class TestCorsConfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"cors_origins": ["https://reader.example"], "hsts": True}

    async def test_configured_origin_may_read_the_listing_headers(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/healthz", headers={"Origin": "https://reader.example"})
        assert response.headers["access-control-allow-origin"] == "https://reader.example"
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert {
            "link",
            "etag",
            "x-total-count",
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        } <= exposed
        assert response.headers["strict-transport-security"].startswith("max-age=")

    async def test_preflight_from_a_configured_origin(self, client: httpx.AsyncClient) -> None:
        response = await client.options(
            "/api/v1/users",
            headers={
                "Origin": "https://reader.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://reader.example"

    async def test_other_origins_stay_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers

    async def test_a_refused_preflight_is_a_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.options(
            "/api/v1/users",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        problem = assert_problem(response, 400)
        assert problem["type"] == "/problems/cors-refused"
        assert "origin" in problem["detail"]
        assert (await client.get(problem["type"])).status_code == 200


class TestProblemTypes:
    async def test_every_type_has_a_page_and_the_index_lists_them(
        self, client: httpx.AsyncClient
    ) -> None:
        index = await client.get("/problems")
        assert index.status_code == 200
        for name, (_status, title, _) in CATALOGUE.items():
            page = await client.get(f"/problems/{name}")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert f"<h1>{title}</h1>" in page.text
            assert f'href="/problems/{name}"' in index.text
            assert (title[:1].isupper() and title[1:] == title[1:].lower()) or " edit " in title
        assert_problem(await client.get("/problems/no-such-type"), 404)

    def test_titles_come_from_the_catalogue(self) -> None:
        from app.comments.service import CommentsClosed, EditWindowClosed
        from app.core import errors

        raised = [
            *(
                c
                for c in vars(errors).values()
                if isinstance(c, type) and issubclass(c, errors.DomainError)
            ),
            CommentsClosed,
            EditWindowClosed,
        ]
        for kind in raised:
            if kind is errors.DomainError:
                continue
            assert kind.type in CATALOGUE, kind
            assert kind.title == CATALOGUE[kind.type][1], kind

    async def test_answers_name_their_type_and_its_title(self, client: httpx.AsyncClient) -> None:
        answers = [
            await client.delete("/healthz"),  # 405
            await client.get("/api/v1/nothing"),  # 404
            await client.get("/api/v1/articles", params={"per_page": 0}),  # 422
            await client.post(
                "/api/v1/articles", content=b"x", headers={"Content-Type": "text/plain"}
            ),
        ]
        for response in answers:
            problem = response.json()
            name = problem["type"].removeprefix("/problems/")
            assert problem["title"] == CATALOGUE[name][1], problem
            assert (await client.get(problem["type"])).status_code == 200


def test_made_up_request_ids_are_unique_across_forked_workers() -> None:
    """Request ids come from a per-process random prefix and a counter (no system call per
    request); a worker forked from a parent must not repeat the parent's ids."""
    import os

    from app.core.middleware import new_request_id

    parent = [new_request_id() for _ in range(3)]
    assert len(set(parent)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in parent)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.close(write_end)
    assert len(child) == 32
    assert child[:20] != parent[0][:20]
