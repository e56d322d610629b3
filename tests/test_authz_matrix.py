"""The authorization matrix, generated from the app's own route table: every route ×
{no token, author, editor, admin, a token narrowed to one scope, a revoked token, an expired
token}. A route without an entry in RULES fails the test, so no endpoint ships unclassified."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.users.models import Role
from tests.factories import bearer, make_token, make_user
from tests.support import app_routes

# public: no token needed, a token is not even read.
# reads-token: public, but a token that is sent is checked (a bad one is a 401).
# token: any valid token. scope:X: a valid token carrying scope X.
# owner-or:X: the commenter's X-Comment-Token or scope X; without either, 401.
RULES: dict[tuple[str, str], str] = {
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/problems"): "public",
    ("GET", "/problems/{problem}"): "public",
    ("GET", "/metrics"): "scope:metrics:read",
    ("GET", "/readyz"): "public",
    ("POST", "/api/v1/auth/token"): "public",
    ("POST", "/api/v1/auth/logout"): "token",
    ("GET", "/api/v1/tokens"): "scope:tokens:write",
    ("POST", "/api/v1/tokens"): "scope:tokens:write",
    ("GET", "/api/v1/tokens/{token_id}"): "scope:tokens:write",
    ("DELETE", "/api/v1/tokens/{token_id}"): "scope:tokens:write",
    ("GET", "/api/v1/users/me"): "token",
    ("GET", "/api/v1/users"): "scope:users:manage",
    ("POST", "/api/v1/users"): "scope:users:manage",
    ("GET", "/api/v1/users/{user_id}"): "scope:users:manage",
    ("PATCH", "/api/v1/users/{user_id}"): "scope:users:manage",
    ("GET", "/api/v1/categories"): "public",
    ("GET", "/api/v1/categories/by-slug/{slug}"): "public",
    ("GET", "/api/v1/categories/{category_id}"): "public",
    ("POST", "/api/v1/categories"): "scope:categories:write",
    ("PUT", "/api/v1/categories/{category_id}"): "scope:categories:write",
    ("PATCH", "/api/v1/categories/{category_id}"): "scope:categories:write",
    ("DELETE", "/api/v1/categories/{category_id}"): "scope:categories:write",
    ("GET", "/api/v1/tags"): "public",
    ("GET", "/api/v1/tags/by-slug/{slug}"): "public",
    ("GET", "/api/v1/tags/{tag_id}"): "public",
    ("POST", "/api/v1/tags"): "scope:categories:write",
    ("PUT", "/api/v1/tags/{tag_id}"): "scope:categories:write",
    ("PATCH", "/api/v1/tags/{tag_id}"): "scope:categories:write",
    ("DELETE", "/api/v1/tags/{tag_id}"): "scope:categories:write",
    ("GET", "/api/v1/articles"): "reads-token",
    ("GET", "/api/v1/articles/by-slug/{slug}"): "reads-token",
    ("GET", "/api/v1/articles/by-number/{number}"): "reads-token",
    ("GET", "/api/v1/articles/{article_id}"): "reads-token",
    ("POST", "/api/v1/articles"): "scope:articles:write",
    ("PUT", "/api/v1/articles/{article_id}"): "scope:articles:write",
    ("PATCH", "/api/v1/articles/{article_id}"): "scope:articles:write",
    ("DELETE", "/api/v1/articles/{article_id}"): "scope:articles:write",
    ("POST", "/api/v1/articles/{article_id}/corrections"): "scope:articles:write",
    ("DELETE", "/api/v1/articles/{article_id}/corrections/{correction_id}"): "scope:articles:write",
    ("GET", "/api/v1/articles/{article_id}/revisions"): "scope:articles:write",
    ("GET", "/api/v1/articles/{article_id}/revisions/{revision_id}"): "scope:articles:write",
    (
        "POST",
        "/api/v1/articles/{article_id}/revisions/{revision_id}/restore",
    ): "scope:articles:write",
    ("POST", "/api/v1/articles/{article_id}/comments"): "reads-token",
    ("GET", "/api/v1/articles/{article_id}/comments"): "public",
    ("GET", "/api/v1/comments"): "scope:comments:moderate",
    ("POST", "/api/v1/comments/bulk"): "scope:comments:moderate",
    ("GET", "/api/v1/comments/{comment_id}"): "reads-token",
    ("PATCH", "/api/v1/comments/{comment_id}"): "owner-or:comments:moderate",
    ("DELETE", "/api/v1/comments/{comment_id}"): "owner-or:comments:moderate",
    ("GET", "/api/v1/privacy/comments"): "scope:privacy:manage",
    ("POST", "/api/v1/privacy/comments/erase"): "scope:privacy:manage",
    ("GET", "/api/v1/authors"): "public",
    ("GET", "/api/v1/authors/{slug}"): "public",
    ("GET", "/feeds/rss"): "public",
    ("GET", "/feeds/atom"): "public",
    ("GET", "/feeds/json"): "public",
    ("GET", "/sitemap.xml"): "public",
    ("GET", "/sitemaps/news.xml"): "public",
    ("GET", "/sitemaps/articles-{page}.xml"): "public",
    ("GET", "/api/v1/comments/unsubscribe"): "public",
    ("POST", "/api/v1/comments/unsubscribe"): "public",
    ("GET", "/api/v1/media"): "reads-token",
    ("GET", "/api/v1/media/{media_id}"): "reads-token",
    ("POST", "/api/v1/media"): "scope:media:write",
    ("PATCH", "/api/v1/media/{media_id}"): "scope:media:write",
    ("DELETE", "/api/v1/media/{media_id}"): "scope:media:write",
    ("GET", "/media/{key:path}"): "public",
    ("GET", "/api/v1/webhooks"): "scope:webhooks:manage",
    ("POST", "/api/v1/webhooks"): "scope:webhooks:manage",
    ("GET", "/api/v1/webhooks/{webhook_id}"): "scope:webhooks:manage",
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): "scope:webhooks:manage",
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): "scope:webhooks:manage",
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): "scope:webhooks:manage",
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): (
        "scope:webhooks:manage"
    ),
}

PRINCIPALS = ("none", "author", "editor", "admin", "narrow", "revoked", "expired")
ROLE_OF = {"author": Role.author, "editor": Role.editor, "admin": Role.admin}
ROLE_SCOPES = {
    "author": {"articles:read", "articles:write", "media:write", "tokens:write"},
    "editor": {
        "articles:read", "articles:write", "media:write", "categories:write", "comments:moderate",
        "tokens:write",
    },
    "narrow": {"comments:moderate"},
}  # fmt: skip


def expected(rule: str, who: str) -> str:
    """`denied-401`, `denied-403` or `allowed` (any status but 401 and 403)."""
    if rule == "public":
        return "allowed"
    bad_token = who in ("revoked", "expired")
    if rule == "reads-token":
        return "denied-401" if bad_token else "allowed"
    if who == "none" or bad_token:
        return "denied-401"
    if rule == "token":
        return "allowed"
    scope = rule.split(":", 1)[1]
    if who == "admin":
        return "allowed"
    return "allowed" if scope in ROLE_SCOPES[who] else "denied-403"


def concrete(path: str) -> str:
    # Ids that do not exist: allowed calls end in 404 or 422 and change nothing.
    return re.sub(r"{(\w+)}", "999999", path)


@pytest.fixture
async def tokens(session: AsyncSession) -> dict[str, str | None]:
    found: dict[str, str | None] = {"none": None}
    for who, role in ROLE_OF.items():
        found[who] = await make_token(session, await make_user(session, role=role))
    admin = await make_user(session, role=Role.admin)
    found["narrow"] = await make_token(session, admin, scopes=["comments:moderate"])
    found["expired"] = await make_token(session, admin, lifetime=timedelta(seconds=-1))
    revoked = await make_token(session, admin)
    await auth.revoke(session, await auth.by_secret(session, revoked))
    await session.commit()
    found["revoked"] = revoked
    return found


async def test_every_route_has_an_authorization_rule(app: Any) -> None:
    served = {(m, p) for p, methods in app_routes(app) for m in methods if m != "HEAD"}
    missing = sorted(served - RULES.keys())
    assert not missing, f"classify these routes in RULES: {missing}"
    stale = sorted(RULES.keys() - served)
    assert not stale, f"RULES lists routes that no longer exist: {stale}"


async def test_authorization_matrix(
    app: Any, client: httpx.AsyncClient, tokens: dict[str, str | None]
) -> None:
    served = sorted(
        {(m, p) for p, methods in app_routes(app) for m in methods if m != "HEAD"},
        # Logging out revokes the token used: do it last.
        key=lambda route: (route[1] == "/api/v1/auth/logout", route),
    )
    cells = 0
    failures = []
    for method, path in served:
        rule = RULES[(method, path)]
        for who in PRINCIPALS:
            token = tokens[who]
            headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
            response = await client.request(
                method, concrete(path), headers=headers, content=b"{}" if method != "GET" else None
            )
            want = expected(rule, who)
            got = response.status_code
            ok = (
                got == 401
                if want == "denied-401"
                else got == 403
                if want == "denied-403"
                else got not in (401, 403)
            )
            if want == "denied-401" and ok:
                assert response.headers["www-authenticate"] == "Bearer"
            if not ok:
                failures.append(f"{method} {path} as {who}: {got}, expected {want}")
            cells += 1
    assert not failures, "\n".join(failures)
    assert cells == len(served) * len(PRINCIPALS)
    assert cells >= 490, "the README's Reliability figure"
