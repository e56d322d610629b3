from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cache import keys
from app.cache.publish import invalidate
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.security import ROLE_SCOPES, Passwords
from app.core.text import free_slug
from app.users.models import Role, User
from app.users.schemas import UserCreate, UserUpdate

# What readers see of a user: an author's name and profile.
PROFILE = frozenset({"display_name", "bio", "avatar_url"})
# The public name of a user created without one: the house byline a newsroom prints on
# unsigned copy. The login name is half of a credential and never shown.
UNNAMED = "Staff"


async def get(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


async def by_username(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(select(User).where(User.username == username))
    return result.scalar_one_or_none()


async def list_users(session: AsyncSession, *, offset: int, limit: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    rows = await session.scalars(select(User).order_by(User.id).offset(offset).limit(limit))
    return list(rows), total


async def _ensure_free(session: AsyncSession, column: str, value: str | None) -> None:
    if value is None:
        return
    exists = await session.scalar(select(User.id).where(getattr(User, column) == value))
    if exists is not None:
        raise Conflict(f"A user with this {column} already exists.", field=column)


async def create(session: AsyncSession, data: UserCreate, *, passwords: Passwords) -> User:
    await _ensure_free(session, "username", data.username)
    await _ensure_free(session, "email", data.email)
    display_name = data.display_name or UNNAMED
    user = User(
        username=data.username,
        email=data.email,
        password_hash=await passwords.hash(data.password),
        role=data.role,
        display_name=display_name,
        slug=await free_slug(
            session, User.id, User.slug, own_id=None, name=display_name, wanted=None, noun="user"
        ),
        bio=data.bio,
        avatar_url=data.avatar_url,
    )
    session.add(user)
    await session.flush()
    return user


async def update(
    session: AsyncSession, user: User, data: UserUpdate, *, actor: User, passwords: Passwords
) -> bool:
    """Apply `data` to `user`. True when the user's tokens must stop working: a new
    password (whoever set it may not be whoever holds them), a role with fewer rights (a
    session opened as admin should not outlive the admin), or deactivation."""
    changes = data.model_dump(exclude_unset=True)
    if user.id == actor.id and (
        changes.get("is_active") is False or changes.get("role", Role.admin) != Role.admin
    ):
        # An admin locking themselves out leaves a newsroom with no one to undo it.
        raise InvalidInput("Admins cannot demote or deactivate themselves.", field="role")
    if "email" in changes and changes["email"] != user.email:
        await _ensure_free(session, "email", changes["email"])
    revoke = False
    if "password" in changes:
        password = changes.pop("password")
        if password is None:
            raise InvalidInput("The password cannot be removed.", field="password")
        user.password_hash = await passwords.hash(password)
        revoke = True
    for key in ("role", "is_active", "display_name"):
        if key in changes and changes[key] is None:
            raise InvalidInput(f"{key} cannot be null.", field=key)
    if "role" in changes and not ROLE_SCOPES[changes["role"]] >= ROLE_SCOPES[user.role]:
        revoke = True
    if changes.get("is_active") is False:
        revoke = True
    if user.display_name == UNNAMED and changes.get("display_name", UNNAMED) != UNNAMED:
        # A first real name brings its own slug; a chosen name's slug stays (author URLs).
        user.slug = await free_slug(
            session,
            User.id,
            User.slug,
            own_id=user.id,
            name=changes["display_name"],
            wanted=None,
            noun="user",
        )
    for key, value in changes.items():
        setattr(user, key, value)
    if PROFILE & changes.keys():
        invalidate(session, keys.author(user.id), keys.AUTHORS, keys.LISTINGS)
    await session.flush()
    return revoke
