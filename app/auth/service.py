from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiToken
from app.core.db import utcnow
from app.core.errors import Forbidden, NotFound
from app.core.security import (
    ROLE_SCOPES,
    TOKEN_DISPLAY_CHARS,
    Passwords,
    hash_token,
    new_token,
)
from app.users import service as users
from app.users.models import User


async def login(
    session: AsyncSession, passwords: Passwords, username: str, password: str
) -> User | None:
    """The user if the credentials are right and the account active; None otherwise.

    Unknown user, wrong password and inactive account look the same to the caller."""
    user = await users.by_username(session, username)
    # The read's transaction ends before the wait for a hashing slot: logins queued behind
    # argon2 would otherwise hold the pool's every connection, and the rest of the site
    # would wait for one (40 parallel logins on PostgreSQL: 503s after the pool timeout).
    await session.commit()
    ok = await passwords.verify(password, user.password_hash if user else None)
    if user is None or not ok or not user.is_active:
        return None
    return user


async def issue(
    session: AsyncSession,
    user: User,
    *,
    kind: str,
    name: str,
    scopes: Sequence[str] | None,
    lifetime: timedelta | None,
    allowed: frozenset[str] | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns it with the secret, which is never stored.

    `allowed` bounds the scopes further (the creating token's own scopes), so a token can
    never mint a token that can do more than itself."""
    bound = ROLE_SCOPES[user.role] if allowed is None else ROLE_SCOPES[user.role] & allowed
    if scopes is not None:
        extra = sorted(set(scopes) - bound)
        if extra:
            raise Forbidden(
                f"Scopes not allowed here: {', '.join(extra)}.",
                field="scopes",
            )
        stored: list[str] | None = sorted(set(scopes))
    else:
        stored = None if allowed is None or bound == ROLE_SCOPES[user.role] else sorted(bound)
    raw, digest = new_token(kind)
    token = ApiToken(
        user_id=user.id,
        kind=kind,
        name=name,
        prefix=raw[:TOKEN_DISPLAY_CHARS],
        token_hash=digest,
        scopes=stored,
        expires_at=utcnow() + lifetime if lifetime else None,
    )
    session.add(token)
    await session.flush()
    return token, raw


async def get(session: AsyncSession, token_id: int) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"No token with id {token_id}.")
    return token


async def by_secret(session: AsyncSession, raw: str) -> ApiToken:
    token = await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))
    if token is None:
        raise NotFound("No such token.")
    return token


async def list_tokens(
    session: AsyncSession, *, user_id: int | None, offset: int, limit: int
) -> tuple[list[ApiToken], int]:
    query = select(ApiToken).where(ApiToken.kind == "api")
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(ApiToken.id).offset(offset).limit(limit))
    return list(rows), total


async def revoke(session: AsyncSession, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    await session.flush()
    return token


async def revoke_all_of(session: AsyncSession, user_id: int, *, keep: int | None = None) -> None:
    """Revoke every live token of the user but `keep`."""
    query = update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if keep is not None:
        query = query.where(ApiToken.id != keep)
    await session.execute(query.values(revoked_at=utcnow()))
