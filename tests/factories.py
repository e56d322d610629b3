"""Small async factories: build what a test needs, explicitly, through the services."""

from __future__ import annotations

import itertools
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.users import service as users
from app.users.models import Role, User
from app.users.schemas import UserCreate

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


async def make_user(
    session: AsyncSession,
    *,
    role: Role = Role.author,
    username: str | None = None,
    display_name: str | None = None,
    email: str | None = None,
) -> User:
    n = next(_seq)
    user = await users.create(
        session,
        UserCreate(
            username=username or f"{role.value}{n}",
            password=PASSWORD,
            role=role,
            display_name=display_name,
            email=email,
        ),
    )
    await session.commit()
    return user


async def make_token(
    session: AsyncSession,
    user: User,
    *,
    scopes: list[str] | None = None,
    lifetime: timedelta | None = None,
) -> str:
    _, raw = await auth.issue(
        session, user, kind="api", name="test", scopes=scopes, lifetime=lifetime
    )
    await session.commit()
    return raw


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
