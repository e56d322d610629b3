"""Passwords, bearer tokens, roles and scopes."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from app.auth.models import ApiToken
from app.core.db import SessionDep, afterwards, utcnow
from app.core.errors import Forbidden, Unauthorized
from app.users.models import Role, User


class Scope(enum.StrEnum):
    """What a token may do. A token's scopes only ever narrow what its owner's role allows."""

    articles_read = "articles:read"
    articles_write = "articles:write"
    categories_write = "categories:write"
    comments_moderate = "comments:moderate"
    tokens_write = "tokens:write"
    users_manage = "users:manage"
    privacy_manage = "privacy:manage"
    webhooks_manage = "webhooks:manage"
    metrics_read = "metrics:read"
    media_write = "media:write"


SCOPES: dict[str, str] = {
    Scope.articles_read: "Read drafts and scheduled articles (an author's own; all for editors).",
    Scope.articles_write: "Create and edit articles (an author's own; all for editors).",
    Scope.categories_write: "Create, change and delete categories and tags.",
    Scope.comments_moderate: "Read the moderation queue and moderate comments.",
    Scope.tokens_write: "Create and revoke API tokens (one's own; anyone's for admins).",
    Scope.users_manage: "Create users, change roles, deactivate accounts.",
    Scope.privacy_manage: "Export and erase a commenter's data (GDPR requests).",
    Scope.webhooks_manage: "Register webhooks and read or retry their deliveries.",
    Scope.metrics_read: "Scrape /metrics (Prometheus): traffic, pool use, comment outcomes.",
    Scope.media_write: "Upload images and edit or delete them (one's own; all for editors).",
}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.author: frozenset({"articles:read", "articles:write", "media:write", "tokens:write"}),
    Role.editor: frozenset(
        {
            "articles:read",
            "articles:write",
            "media:write",
            "categories:write",
            "comments:moderate",
            "tokens:write",
        }
    ),
    Role.admin: frozenset(SCOPES),
}

API_TOKEN_PREFIX = "nws_"  # noqa: S105 - a public marker, not a secret
SESSION_TOKEN_PREFIX = "nwss_"  # noqa: S105
TOKEN_DISPLAY_CHARS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)

password_hash = PasswordHash((Argon2Hasher(),))
# Verified when a login names an unknown user, so both paths cost one argon2 check.
_DUMMY_HASH = password_hash.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return password_hash.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    if hashed is None:
        password_hash.verify(password, _DUMMY_HASH)
        return False
    return password_hash.verify(password, hashed)


class Passwords:
    """argon2 in worker threads, at most `concurrency` at once: each check takes tens of
    milliseconds of CPU, which on the event loop would stall every other request, and
    unbounded in threads would let a burst of logins take every core.

    anyio rather than asyncio.to_thread: a request cancelled mid-check keeps its slot until
    its thread finishes, so disconnecting clients cannot raise the bound."""

    def __init__(self, concurrency: int) -> None:
        self._slots = anyio.CapacityLimiter(concurrency)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(hash_password, password, limiter=self._slots)

    async def verify(self, password: str, hashed: str | None) -> bool:
        return await anyio.to_thread.run_sync(
            verify_password, password, hashed, limiter=self._slots
        )


def passwords(request: Request) -> Passwords:
    found: Passwords = request.app.state.passwords
    return found


PasswordsDep = Annotated[Passwords, Depends(passwords)]


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast digest is safe; a slow KDF would only cost latency.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: str) -> tuple[str, str]:
    """Return (the token to show once, the digest to store)."""
    prefix = SESSION_TOKEN_PREFIX if kind == "session" else API_TOKEN_PREFIX
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token)


def effective_scopes(role: Role, requested: list[str] | None) -> frozenset[str]:
    allowed = ROLE_SCOPES[role]
    return allowed if requested is None else allowed & frozenset(requested)


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    token: ApiToken
    scopes: frozenset[str]

    @property
    def role(self) -> Role:
        return self.user.role

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def sees_all_articles(self) -> bool:
        return self.user.role in (Role.editor, Role.admin)


def acting_as(user: User) -> Principal:
    """A principal for work done on a user's behalf outside a request (CLI, import, demo):
    everything their role allows."""
    return Principal(user=user, token=ApiToken(), scopes=ROLE_SCOPES[user.role])


# Per process: when this process last claimed a token's last-used write, so that parallel
# requests with one token write it once per resolution period, not once each.
_claimed: dict[str, float] = {}
_CLAIMS_KEPT = 10_000


def _claim(digest: str) -> bool:
    now = time.monotonic()
    period = LAST_USED_RESOLUTION.total_seconds()
    if now - _claimed.get(digest, -period) < period:
        return False
    if len(_claimed) >= _CLAIMS_KEPT:
        for old in [d for d, at in _claimed.items() if now - at >= period]:
            del _claimed[old]
    _claimed[digest] = now
    return True


async def _touch(session: AsyncSession, *, token_id: int, now: datetime) -> None:
    """Record a token's use, unless another process has within the resolution period."""
    await session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at <= now - LAST_USED_RESOLUTION,
            ),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scopes=SCOPES, auto_error=False)


async def authenticate(session: AsyncSession, raw: str) -> Principal:
    digest = hash_token(raw)
    row = await session.execute(
        select(ApiToken)
        .join(ApiToken.user)
        .options(contains_eager(ApiToken.user))
        .where(ApiToken.token_hash == digest)
    )
    token = row.scalar_one_or_none()
    now = utcnow()
    if (
        token is None
        or not hmac.compare_digest(token.token_hash, digest)
        or token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
        or not token.user.is_active
    ):
        raise Unauthorized("The token is missing, invalid, expired or revoked.")
    stale = token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION
    if stale and _claim(digest):
        # After the answer, on this request's session: written mid-request, each of N
        # parallel requests waited on the token's row lock, committed and queued for a
        # connection again; under load they ran out the pool's timeout.
        afterwards(session, partial(_touch, token_id=token.id, now=now))
    return Principal(
        user=token.user, token=token, scopes=effective_scopes(token.user.role, token.scopes)
    )


async def optional_principal(
    session: SessionDep,
    raw: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal | None:
    """The caller if a token is sent; anonymous otherwise. A bad token is still a 401."""
    if raw is None:
        return None
    return await authenticate(session, raw)


async def current_principal(
    security_scopes: SecurityScopes,
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise Unauthorized("This endpoint needs a bearer token.")
    missing = [s for s in security_scopes.scopes if s not in principal.scopes]
    if missing:
        raise Forbidden(f"This token lacks the scope {', '.join(missing)}.")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
