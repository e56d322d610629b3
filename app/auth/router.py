from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response, Security, status

from app.auth import service
from app.auth.models import ApiToken
from app.auth.schemas import (
    AccessToken,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPublic,
    LoginForm,
)
from app.core.config import app_settings
from app.core.db import SessionDep
from app.core.errors import NotFound, TooManyRequests, Unauthorized
from app.core.net import client_ip
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.schemas import MAX_ID, IdPath
from app.core.security import (
    CurrentPrincipal,
    PasswordsDep,
    Principal,
    current_principal,
    effective_scopes,
)
from app.users import service as users

router = APIRouter(prefix="/api/v1", tags=["auth"])

TokensPrincipal = Annotated[Principal, Security(current_principal, scopes=["tokens:write"])]


@router.post(
    "/auth/token",
    response_model=AccessToken,
    responses=responses(401, 422, 429),
    summary="Log in",
)
async def login(
    request: Request,
    session: SessionDep,
    passwords: PasswordsDep,
    form: Annotated[LoginForm, Form()],
) -> AccessToken:
    """Exchange a username and password for a short-lived bearer token (OAuth2 password
    flow, so the Authorize button of `/docs` works). `scope` may narrow the token.

    A wrong password, an unknown user and a deactivated account get the same answer.
    Failed attempts are rate limited per client address and user name, and every attempt
    per client address."""
    settings = app_settings(request)
    limiter = request.app.state.ratelimiter
    ip = client_ip(request)
    named = ("login", ip, form.username.lower())
    for rule, key in (
        (settings.login_rate_limit, named),
        (settings.login_rate_limit_ip, ("login", ip)),
    ):
        # Counted before the password is checked, in one atomic step: parallel guesses
        # cannot all pass a check that none of them has been counted against yet.
        verdict = await limiter.hit(rule, *key)
        if not verdict.allowed:
            raise TooManyRequests(
                "Too many login attempts; wait before trying again.",
                retry_after=verdict.reset_after,
            )
    user = await service.login(session, passwords, form.username, form.password)
    if user is None:
        raise Unauthorized("Wrong username or password.")
    # Only failures count per user name, and only the password's holder can succeed.
    # The address's count stays: forgiving it would let one known account reset a spray.
    await limiter.clear(settings.login_rate_limit, *named)
    requested = form.scopes or None
    lifetime = timedelta(minutes=settings.access_token_minutes)
    token, raw = await service.issue(
        session, user, kind="session", name="login", scopes=requested, lifetime=lifetime
    )
    await session.commit()
    scopes = effective_scopes(user.role, token.scopes)
    return AccessToken(
        access_token=raw,
        expires_in=int(lifetime.total_seconds()),
        scope=" ".join(sorted(scopes)),
    )


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401),
    summary="Revoke the token used for this request",
)
async def logout(session: SessionDep, principal: CurrentPrincipal) -> Response:
    token = await service.get(session, principal.token.id)
    await service.revoke(session, token)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _owner_filter(principal: Principal, user_id: int | None) -> int | None:
    if principal.can("users:manage"):
        return user_id
    return principal.user.id


@router.get(
    "/tokens",
    response_model=Page[ApiTokenPublic],
    responses=responses(401, 403, 422),
    summary="List API tokens",
)
async def list_tokens(
    request: Request,
    response: Response,
    session: SessionDep,
    principal: TokensPrincipal,
    params: Annotated[PageParams, Depends(page_params)],
    user_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Admins: one user's tokens.")
    ] = None,
) -> Page[ApiTokenPublic]:
    """Your own API tokens; admins see everyone's. Secrets are never shown again."""
    rows, total = await service.list_tokens(
        session,
        user_id=_owner_filter(principal, user_id),
        offset=params.offset,
        limit=params.per_page,
    )
    set_page_headers(request, response, total=total, params=params)
    return Page[ApiTokenPublic].of([ApiTokenPublic.model_validate(t) for t in rows], total, params)


@router.post(
    "/tokens",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 404, 422),
    summary="Create an API token",
)
async def create_token(
    session: SessionDep, principal: TokensPrincipal, data: ApiTokenCreate, response: Response
) -> ApiTokenCreated:
    """A long-lived token for a script or app. The secret is in this response only.

    `scopes` can only narrow what the owner's role (and the calling token) allows."""
    owner = principal.user
    if data.user_id is not None and data.user_id != owner.id:
        if not principal.can("users:manage"):
            raise NotFound(f"No user with id {data.user_id}.")
        owner = await users.get(session, data.user_id)
    lifetime = timedelta(days=data.expires_in_days) if data.expires_in_days else None
    token, raw = await service.issue(
        session,
        owner,
        kind="api",
        name=data.name,
        scopes=data.scopes,
        lifetime=lifetime,
        allowed=principal.scopes,
    )
    await session.commit()
    response.headers["Location"] = f"/api/v1/tokens/{token.id}"
    public = ApiTokenPublic.model_validate(token)
    return ApiTokenCreated(**public.model_dump(), token=raw)


async def _visible_token(session: SessionDep, principal: Principal, token_id: int) -> ApiToken:
    token = await service.get(session, token_id)
    if token.user_id != principal.user.id and not principal.can("users:manage"):
        raise NotFound(f"No token with id {token_id}.")
    return token


@router.get(
    "/tokens/{token_id}",
    response_model=ApiTokenPublic,
    responses=responses(401, 403, 404),
    summary="Read an API token",
)
async def read_token(
    session: SessionDep, principal: TokensPrincipal, token_id: IdPath
) -> ApiTokenPublic:
    return ApiTokenPublic.model_validate(await _visible_token(session, principal, token_id))


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
    summary="Revoke an API token",
)
async def revoke_token(
    session: SessionDep, principal: TokensPrincipal, token_id: IdPath
) -> Response:
    """Revocation takes effect on the next request that uses the token."""
    token = await _visible_token(session, principal, token_id)
    await service.revoke(session, token)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
