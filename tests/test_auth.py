"""Users, roles and bearer tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiToken
from app.core.security import hash_token
from app.users.models import Role
from tests.factories import PASSWORD, bearer, make_token, make_user


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )


class TestLogin:
    async def test_a_json_login_is_told_to_send_a_form_or_use_an_api_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, role=Role.editor, username="desk")
        response = await client.post(
            "/api/v1/auth/token", json={"username": "desk", "password": PASSWORD}
        )
        assert response.status_code == 415
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        assert "application/x-www-form-urlencoded" in detail
        assert "POST /api/v1/tokens" in detail
        assert (await login(client, "desk", PASSWORD)).status_code == 200

    async def test_password_login_returns_a_working_bearer_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, role=Role.editor, username="desk")
        response = await login(client, "desk", PASSWORD)
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["access_token"].startswith("nwss_")
        assert 0 < body["expires_in"] <= 24 * 3600
        assert "comments:moderate" in body["scope"].split()
        me = await client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200
        assert me.json()["username"] == "desk"
        assert me.json()["role"] == "editor"

    async def test_unknown_user_and_wrong_password_look_the_same(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, username="known")
        wrong = await login(client, "known", "not the password")
        unknown = await login(client, "nobody", "not the password")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert wrong.headers["content-type"] == "application/problem+json"
        assert wrong.json() == unknown.json()

    async def test_deactivated_user_cannot_log_in(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session, username="gone")
        user.is_active = False
        await session.commit()
        response = await login(client, "gone", PASSWORD)
        assert response.status_code == 401
        assert response.json() == (await login(client, "nobody", PASSWORD)).json()

    async def test_failed_logins_are_rate_limited(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, username="target")
        statuses = [(await login(client, "target", f"guess-{i}")).status_code for i in range(6)]
        assert statuses == [401] * 5 + [429]
        blocked = await login(client, "target", PASSWORD)
        assert blocked.status_code == 429, "even the right password waits out the window"
        assert int(blocked.headers["retry-after"]) >= 1
        assert blocked.headers["content-type"] == "application/problem+json"

    async def test_successful_logins_are_not_counted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, username="busy")
        for _ in range(8):
            assert (await login(client, "busy", PASSWORD)).status_code == 200

    async def test_login_scope_narrows_the_session_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, role=Role.admin, username="boss")
        response = await client.post(
            "/api/v1/auth/token",
            data={"username": "boss", "password": PASSWORD, "scope": "comments:moderate"},
        )
        assert response.status_code == 200
        assert response.json()["scope"] == "comments:moderate"
        users = await client.get("/api/v1/users", headers=bearer(response.json()["access_token"]))
        assert users.status_code == 403

    async def test_logout_revokes_the_token(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        await make_user(session, username="leaving")
        token = (await login(client, "leaving", PASSWORD)).json()["access_token"]
        assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
        assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 401


class TestUnauthorizedVersusForbidden:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer nws_not-a-real-token"},
            {"Authorization": "Basic Zm9vOmJhcg=="},
        ],
    )
    async def test_missing_or_wrong_credentials_get_401(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.get("/api/v1/users", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["status"] == 401

    async def test_valid_token_without_the_right_gets_403(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session, role=Role.author)
        token = await make_token(session, author)
        response = await client.get("/api/v1/users", headers=bearer(token))
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert "users:manage" in response.json()["detail"]


class TestApiTokens:
    async def test_token_is_shown_once_and_stored_only_as_a_hash(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        login_token = await make_token(session, admin)
        created = await client.post(
            "/api/v1/tokens",
            json={"name": "moderation app", "scopes": ["comments:moderate"]},
            headers=bearer(login_token),
        )
        assert created.status_code == 201
        body = created.json()
        secret = body["token"]
        assert secret.startswith("nws_")
        assert len(secret) > 40
        assert body["prefix"] == secret[:12]
        assert created.headers["location"] == f"/api/v1/tokens/{body['id']}"

        stored = (await session.scalars(select(ApiToken).where(ApiToken.id == body["id"]))).one()
        assert stored.token_hash == hash_token(secret)
        columns: list[Any] = [getattr(stored, c.key) for c in ApiToken.__table__.columns]
        assert all(secret not in str(value) for value in columns)

        listed = await client.get("/api/v1/tokens", headers=bearer(login_token))
        assert listed.status_code == 200
        assert all("token" not in item for item in listed.json()["items"])
        again = await client.get(f"/api/v1/tokens/{body['id']}", headers=bearer(login_token))
        assert "token" not in again.json()

    async def test_expired_token_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        token = await make_token(session, user, lifetime=timedelta(seconds=-1))
        response = await client.get("/api/v1/users/me", headers=bearer(token))
        assert response.status_code == 401

    async def test_expiry_is_set_from_expires_in_days(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        token = await make_token(session, user)
        created = await client.post(
            "/api/v1/tokens", json={"name": "ci", "expires_in_days": 7}, headers=bearer(token)
        )
        assert created.status_code == 201
        expires = created.json()["expires_at"]
        assert expires is not None
        assert expires.endswith("Z") or "+00:00" in expires

    async def test_revocation_takes_effect_on_the_next_request(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        admin_token = await make_token(session, user)
        created = (
            await client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer(admin_token))
        ).json()
        victim = created["token"]
        assert (await client.get("/api/v1/users/me", headers=bearer(victim))).status_code == 200
        revoke = await client.delete(f"/api/v1/tokens/{created['id']}", headers=bearer(admin_token))
        assert revoke.status_code == 204
        assert (await client.get("/api/v1/users/me", headers=bearer(victim))).status_code == 401

    async def test_scopes_only_narrow_the_owners_role(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        author = await make_user(session, role=Role.author)
        token = await make_token(session, author)
        escalate = await client.post(
            "/api/v1/tokens",
            json={"name": "sneaky", "scopes": ["users:manage"]},
            headers=bearer(token),
        )
        assert escalate.status_code == 403

    async def test_a_narrow_token_cannot_mint_a_wider_one(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        narrow = await make_token(session, admin, scopes=["tokens:write"])
        wider = await client.post(
            "/api/v1/tokens",
            json={"name": "wider", "scopes": ["users:manage"]},
            headers=bearer(narrow),
        )
        assert wider.status_code == 403
        inherit = await client.post("/api/v1/tokens", json={"name": "same"}, headers=bearer(narrow))
        assert inherit.status_code == 201
        assert inherit.json()["scopes"] == ["tokens:write"]

    async def test_narrow_scope_limits_what_an_admin_token_can_do(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin, scopes=["comments:moderate"])
        assert (await client.get("/api/v1/users", headers=bearer(token))).status_code == 403
        me = await client.get("/api/v1/users/me", headers=bearer(token))
        assert me.json()["scopes"] == ["comments:moderate"]

    async def test_unknown_scope_is_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        token = await make_token(session, user)
        response = await client.post(
            "/api/v1/tokens", json={"name": "x", "scopes": ["root"]}, headers=bearer(token)
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"].startswith("scopes")

    async def test_users_see_only_their_own_tokens(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        alice = await make_user(session)
        bob = await make_user(session)
        alice_token = await make_token(session, alice)
        bob_token = await make_token(session, bob)
        bob_tokens = (await client.get("/api/v1/tokens", headers=bearer(bob_token))).json()
        assert {t["user_id"] for t in bob_tokens["items"]} == {bob.id}
        bob_token_id = bob_tokens["items"][0]["id"]
        peek = await client.get(f"/api/v1/tokens/{bob_token_id}", headers=bearer(alice_token))
        assert peek.status_code == 404
        kill = await client.delete(f"/api/v1/tokens/{bob_token_id}", headers=bearer(alice_token))
        assert kill.status_code == 404

    async def test_last_used_time_is_recorded(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        token = await make_token(session, user)
        await client.get("/api/v1/users/me", headers=bearer(token))
        stored = await session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
        assert stored is not None
        await session.refresh(stored)
        assert stored.last_used_at is not None


NEW_PASSWORD = "a brand new secret"


async def new_password(client: httpx.AsyncClient, user_id: int, token: str) -> httpx.Response:
    return await client.patch(
        f"/api/v1/users/{user_id}", json={"password": NEW_PASSWORD}, headers=bearer(token)
    )


async def me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/v1/users/me", headers=bearer(token))).status_code


class TestCredentialChangesRevokeTokens:
    """A token outlives neither the password nor the role it was issued under."""

    async def test_a_password_set_by_an_admin_revokes_every_token_of_the_user(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin_token = await make_token(session, await make_user(session, role=Role.admin))
        author = await make_user(session, username="writer")
        api_token = await make_token(session, author)
        session_token = (await login(client, "writer", PASSWORD)).json()["access_token"]
        assert (await new_password(client, author.id, admin_token)).status_code == 200
        assert [await me(client, t) for t in (api_token, session_token, admin_token)] == [
            401,
            401,
            200,
        ]
        assert (await login(client, "writer", PASSWORD)).status_code == 401
        assert (await login(client, "writer", NEW_PASSWORD)).status_code == 200

    async def test_ones_own_new_password_keeps_only_the_token_that_set_it(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin, username="chief")
        used = await make_token(session, admin)
        other = await make_token(session, admin)
        session_token = (await login(client, "chief", PASSWORD)).json()["access_token"]
        assert (await new_password(client, admin.id, used)).status_code == 200
        assert [await me(client, t) for t in (used, other, session_token)] == [200, 401, 401]

    @pytest.mark.parametrize(("before", "after"), [("admin", "editor"), ("editor", "author")])
    async def test_a_lower_role_revokes_every_token_of_the_user(
        self, client: httpx.AsyncClient, session: AsyncSession, before: str, after: str
    ) -> None:
        admin_token = await make_token(session, await make_user(session, role=Role.admin))
        user = await make_user(session, role=Role(before))
        token = await make_token(session, user)
        demote = await client.patch(
            f"/api/v1/users/{user.id}", json={"role": after}, headers=bearer(admin_token)
        )
        assert demote.status_code == 200
        assert [await me(client, t) for t in (token, admin_token)] == [401, 200]

    async def test_a_higher_role_or_a_new_profile_keeps_the_tokens(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin_token = await make_token(session, await make_user(session, role=Role.admin))
        author = await make_user(session)
        token = await make_token(session, author)
        for change in ({"role": "editor"}, {"display_name": "New Byline"}):
            response = await client.patch(
                f"/api/v1/users/{author.id}", json=change, headers=bearer(admin_token)
            )
            assert response.status_code == 200
        me = await client.get("/api/v1/users/me", headers=bearer(token))
        assert me.status_code == 200
        assert "comments:moderate" in me.json()["scopes"], "the new role's rights, at once"


class TestUsers:
    async def test_admin_creates_lists_and_changes_users(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        created = await client.post(
            "/api/v1/users",
            json={
                "username": "reporter",
                "password": "long enough pw",
                "role": "author",
                "display_name": "Zoë Reporter",
            },
            headers=bearer(token),
        )
        assert created.status_code == 201
        user = created.json()
        assert user["slug"] == "zoe-reporter"
        assert "password" not in user
        assert "password_hash" not in user
        listed = await client.get("/api/v1/users", headers=bearer(token))
        assert listed.json()["total"] == 2
        assert listed.headers["x-total-count"] == "2"
        changed = await client.patch(
            f"/api/v1/users/{user['id']}", json={"role": "editor"}, headers=bearer(token)
        )
        assert changed.json()["role"] == "editor"

    async def test_duplicate_username_is_a_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin, username="chief")
        token = await make_token(session, admin)
        response = await client.post(
            "/api/v1/users",
            json={"username": "chief", "password": "long enough pw"},
            headers=bearer(token),
        )
        assert response.status_code == 409
        assert response.json()["errors"][0]["field"] == "username"

    async def test_deactivation_stops_the_users_tokens_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        admin_token = await make_token(session, admin)
        author = await make_user(session)
        author_token = await make_token(session, author)
        assert (
            await client.get("/api/v1/users/me", headers=bearer(author_token))
        ).status_code == 200
        response = await client.patch(
            f"/api/v1/users/{author.id}", json={"is_active": False}, headers=bearer(admin_token)
        )
        assert response.status_code == 200
        assert response.json()["is_active"] is False
        assert (
            await client.get("/api/v1/users/me", headers=bearer(author_token))
        ).status_code == 401

    async def test_admin_cannot_lock_themselves_out(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        response = await client.patch(
            f"/api/v1/users/{admin.id}", json={"is_active": False}, headers=bearer(token)
        )
        assert response.status_code == 422

    async def test_unknown_fields_are_refused(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin)
        token = await make_token(session, admin)
        response = await client.post(
            "/api/v1/users",
            json={"username": "x-user", "password": "long enough pw", "is_superuser": True},
            headers=bearer(token),
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "is_superuser"
