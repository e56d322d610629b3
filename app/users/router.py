from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, Security, status

from app.auth import service as auth
from app.core.db import SessionDep
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.schemas import IdPath
from app.core.security import CurrentPrincipal, PasswordsDep, Principal, current_principal
from app.users import service
from app.users.schemas import UserAdmin, UserCreate, UserMe, UserUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])

AdminPrincipal = Annotated[Principal, Security(current_principal, scopes=["users:manage"])]


@router.get("/me", response_model=UserMe, responses=responses(401), summary="Who am I")
async def read_me(principal: CurrentPrincipal) -> UserMe:
    """The account behind the token, with the scopes this token carries."""
    return UserMe(
        **UserAdmin.model_validate(principal.user).model_dump(),
        scopes=sorted(principal.scopes),
    )


@router.get(
    "",
    response_model=Page[UserAdmin],
    responses=responses(401, 403, 422),
    summary="List users",
)
async def list_users(
    request: Request,
    response: Response,
    session: SessionDep,
    _: AdminPrincipal,
    params: Annotated[PageParams, Depends(page_params)],
) -> Page[UserAdmin]:
    rows, total = await service.list_users(session, offset=params.offset, limit=params.per_page)
    set_page_headers(request, response, total=total, params=params)
    return Page[UserAdmin].of([UserAdmin.model_validate(u) for u in rows], total, params)


@router.post(
    "",
    response_model=UserAdmin,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422),
    summary="Create a user",
)
async def create_user(
    session: SessionDep,
    _: AdminPrincipal,
    passwords: PasswordsDep,
    data: UserCreate,
    response: Response,
) -> UserAdmin:
    user = await service.create(session, data, passwords=passwords)
    await session.commit()
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserAdmin.model_validate(user)


@router.get(
    "/{user_id}",
    response_model=UserAdmin,
    responses=responses(401, 403, 404),
    summary="Read a user",
)
async def read_user(session: SessionDep, _: AdminPrincipal, user_id: IdPath) -> UserAdmin:
    return UserAdmin.model_validate(await service.get(session, user_id))


@router.patch(
    "/{user_id}",
    response_model=UserAdmin,
    responses=responses(401, 403, 404, 409, 422),
    summary="Change a user",
)
async def update_user(
    session: SessionDep,
    principal: AdminPrincipal,
    passwords: PasswordsDep,
    user_id: IdPath,
    data: UserUpdate,
) -> UserAdmin:
    """Change role, profile or password, or deactivate (`is_active: false`).

    A new password, a lower role or deactivation revokes the user's tokens: they stop
    working on their next request. An admin who changes their own password keeps the token
    of this request and loses the others."""
    user = await service.get(session, user_id)
    if await service.update(session, user, data, actor=principal.user, passwords=passwords):
        # Admins cannot demote or deactivate themselves: their own change is a password.
        keep = principal.token.id if user.id == principal.user.id else None
        await auth.revoke_all_of(session, user.id, keep=keep)
    await session.commit()
    return UserAdmin.model_validate(user)
