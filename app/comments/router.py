from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, Security, status
from pydantic import EmailStr
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.articles import service as articles
from app.cache import keys
from app.comments import reads, service
from app.comments.models import Comment, CommentState
from app.comments.schemas import (
    BulkAction,
    BulkResult,
    CommentAdmin,
    CommentCreate,
    CommentCreated,
    CommentEdit,
    CommentOwn,
    CommentPublic,
    CommentThreaded,
    ErasureRequest,
    ErasureResult,
)
from app.core import idempotency, metrics
from app.core.config import app_settings
from app.core.db import SessionDep, dialect_of, read_only, utcnow
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.core.http_cache import PRIVATE
from app.core.net import client_ip
from app.core.openapi import links, responses
from app.core.pagination import Page, PageParams, page_count, page_params, set_page_headers
from app.core.ratelimit import Verdict
from app.core.render import FieldsParam, json, parse_fields, trim_tree
from app.core.schemas import MAX_ID, IdPath
from app.core.security import OptionalPrincipal, Principal, current_principal

router = APIRouter(prefix="/api/v1", tags=["comments"])

Moderator = Annotated[Principal, Security(current_principal, scopes=["comments:moderate"])]
PrivacyOfficer = Annotated[Principal, Security(current_principal, scopes=["privacy:manage"])]
CommentToken = Annotated[
    str | None,
    Header(
        alias="X-Comment-Token",
        max_length=100,
        description="The `edit_token` from posting: read, edit or delete your own comment.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retrying with the same key returns the first answer and creates nothing.",
    ),
]


def _rate_headers(verdict: Verdict | None) -> dict[str, str]:
    if verdict is None:
        return {}
    return {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset_after),
    }


def _own_view(comment: Comment, token: str | None = None) -> CommentCreated:
    # The poster is never told that a comment went to spam: to them it is pending.
    shown = CommentState.pending if comment.status == CommentState.spam else comment.status
    return CommentCreated(
        id=comment.id,
        article_id=comment.article_id,
        parent_id=comment.parent_id,
        depth=comment.depth,
        author_name=comment.author_name,
        author_url=comment.author_url,
        content=comment.content_html,
        created_at=comment.created_at,
        staff=comment.by_staff,
        status=shown,
        edit_expires_at=comment.edit_expires_at,
        edit_token=token,
    )


def _public(comment: Comment | reads.CommentRow, removed: bool = False) -> CommentPublic:
    return CommentPublic(
        id=comment.id,
        article_id=comment.article_id,
        parent_id=comment.parent_id,
        depth=comment.depth,
        author_name=None if removed else comment.author_name,
        author_url=None if removed else comment.author_url,
        content=None if removed else comment.content_html,
        created_at=comment.created_at,
        removed=removed,
        staff=comment.by_staff and not removed,
    )


@router.post(
    "/articles/{article_id}/comments",
    response_model=CommentCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        **responses(401, 403, 404, 409, 413, 415, 422, 429),
        **links(
            201,
            ReadComment=("readComment", "comment_id=$response.body#/id"),
            ModerateComment=("editComment", "comment_id=$response.body#/id"),
            DeleteComment=("deleteComment", "comment_id=$response.body#/id"),
        ),
    },
    operation_id="postComment",
    summary="Leave a reply",
)
async def post_comment(
    request: Request,
    session: SessionDep,
    article_id: IdPath,
    data: CommentCreate,
    principal: OptionalPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Post a reader's comment (no token needed). Name, email and content are required; the
    email is never published. The answer says whether the comment is `approved` or
    `pending` moderation and carries a one-time `edit_token` (see `X-Comment-Token`).

    Refused with 429 (with `Retry-After`) when the same email posts again within seconds
    or the address's hourly limit is spent (counted before anything else), 403
    `comments-closed` when comments are closed, 409 when the same client posts the same
    text under the same email again. A name that reads as a staff member's is held, unless
    the post comes with a newsroom member's token: then it is marked `staff`."""
    settings = app_settings(request)
    scope = f"POST /articles/{article_id}/comments"
    fingerprint = ""
    # PostgreSQL with no key to store: the checks are one read, and the comment (counted
    # under its article's row lock) one statement, each atomic on its own. No transaction,
    # so no BEGIN and COMMIT round trips, unless events must be stored with the comment
    # (a webhook that wants it, a reply email). The article's row lock is then held only
    # inside that statement, never across a round trip to this process: under load, 200
    # posts to one article queued behind locks held over busy event loops.
    # (A staff member's post has read its token on this session already: a transaction.)
    autocommit = (
        idempotency_key is None and principal is None and dialect_of(session) == "postgresql"
    )
    if autocommit:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    if idempotency_key is not None:
        fingerprint = idempotency.request_hash(data.model_dump(mode="json"))
        stored = await idempotency.lookup(session, idempotency_key, scope, fingerprint)
        if stored is not None:
            return _replay(stored)
    ip = client_ip(request)
    # Limits first: every attempt is counted before anything answers from stored comments.
    limits = await service.check_limits(
        request.app.state.ratelimiter, settings, ip=ip, email=data.author_email
    )
    place = await service.prepare(session, article_id, data, settings, ip=ip)
    comment, token = service.compose(
        place,
        data,
        ip=ip,
        user_agent=(request.headers.get("user-agent") or "")[:512] or None,
        settings=settings,
        staff=principal is not None,
    )
    hooks = await service.hooks_for(session, comment)
    if autocommit and service.writes_with(session, comment, settings, hooks):
        # A transaction after all: release the autocommit connection, take one that begins.
        await session.commit()
        autocommit = False
    comment = await service.save(session, comment, settings, hooks)
    location = f"/api/v1/comments/{comment.id}"
    response = json(
        _own_view(comment, token),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": location, "Cache-Control": PRIVATE, **_rate_headers(limits.hourly)},
    )
    try:
        if idempotency_key is not None:
            await idempotency.remember(
                session,
                idempotency_key,
                scope,
                fingerprint,
                status_code=201,
                body=bytes(response.body),
                location=location,
            )
        # On an autocommit connection the comment is stored already: this sends nothing,
        # but publishes its invalidations as any commit does.
        await session.commit()
    except IntegrityError:
        # The same key raced us from another request: answer as it was answered.
        await session.rollback()
        if idempotency_key is None:
            raise
        stored = await idempotency.lookup(session, idempotency_key, scope, fingerprint)
        if stored is None:
            raise
        return _replay(stored)
    metrics.comment_outcome(comment.status.value)
    return response


def _replay(stored: idempotency.IdempotentResponse) -> Response:
    headers = {"Cache-Control": PRIVATE, "Idempotent-Replayed": "true"}
    if stored.location:
        headers["Location"] = stored.location
    return Response(
        stored.body, status_code=stored.status_code, media_type="application/json", headers=headers
    )


@router.get(
    "/articles/{article_id}/comments",
    response_model=Page[CommentPublic] | Page[CommentThreaded],
    responses=responses(404, 422),
    operation_id="listComments",
    summary="Read an article's comments",
)
async def list_comments(
    request: Request,
    article_id: IdPath,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100, description="Top-level threads per page.")] = 20,
    order: Annotated[Literal["oldest", "newest"], Query()] = "oldest",
    tree: Annotated[bool, Query(description="Nest replies under their parents.")] = False,
    fields: FieldsParam = None,
) -> Response:
    """Approved comments, paged by top-level thread so a thread is never cut in half.
    Flat (each item has `parent_id` and `depth`, in reading order) or `tree=true`.
    `total` and `pages` count threads. `fields` trims every comment, at every depth of a
    tree (`replies` is kept when named)."""
    wanted = parse_fields(fields, CommentThreaded if tree else CommentPublic)
    params = PageParams(page=page, per_page=per_page)
    now = utcnow()

    async def read(db: AsyncConnection) -> tuple[list[reads.Node], int] | None:
        if not await reads.article_is_public(db, article_id, now):
            return None
        return await reads.threads(
            db,
            article_id,
            offset=params.offset,
            limit=params.per_page,
            newest_first=order == "newest",
        )

    found = await read_only(request, read)
    if found is None:
        raise articles.hidden(article_id)
    nodes, total = found
    pages = page_count(total, per_page)
    body: Page[CommentPublic] | Page[CommentThreaded] | Page[dict[str, Any]]
    if tree:

        def nest(node: reads.Node) -> CommentThreaded:
            return CommentThreaded(
                **_public(node.comment, node.removed).model_dump(),
                replies=[nest(r) for r in node.replies],
            )

        body = Page[CommentThreaded](
            items=[nest(n) for n in nodes], total=total, page=page, per_page=per_page, pages=pages
        )
    else:
        flat: list[CommentPublic] = []

        def walk(node: reads.Node) -> None:
            flat.append(_public(node.comment, node.removed))
            for reply in node.replies:
                walk(reply)

        for node in nodes:
            walk(node)
        body = Page[CommentPublic](
            items=flat, total=total, page=page, per_page=per_page, pages=pages
        )
    if wanted is not None and tree:
        items = [trim_tree(item.model_dump(mode="json"), wanted, "replies") for item in body.items]
        body = Page[dict[str, Any]](**body.model_dump(exclude={"items"}), items=items)
    response = json(body, fields=None if tree else wanted, list_fields=True)
    set_page_headers(request, response, total=total, params=params)
    return keys.label(response, [keys.comments(article_id)])


@router.get(
    "/comments",
    response_model=Page[CommentAdmin],
    responses=responses(401, 403, 422),
    summary="Moderation queue",
)
async def moderation_queue(
    request: Request,
    session: SessionDep,
    _: Moderator,
    params: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[
        Literal["pending", "approved", "spam", "trash"] | None, Query(alias="status")
    ] = None,
    article: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this article's comments.")
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text, name or email.")] = None,
) -> Response:
    """Newest first, with the private fields (email, IP address, user agent) moderators
    need. Never cached."""
    rows, total = await service.moderation_queue(
        session,
        status=status_,
        article_id=article,
        q=q,
        offset=params.offset,
        limit=params.per_page,
    )
    body = Page[CommentAdmin].of([CommentAdmin.model_validate(c) for c in rows], total, params)
    response = json(body)
    set_page_headers(request, response, total=total, params=params)
    return response


@router.post(
    "/comments/bulk",
    response_model=BulkResult,
    responses=responses(401, 403, 422),
    summary="Moderate many comments",
)
async def bulk_moderate(session: SessionDep, _: Moderator, data: BulkAction) -> BulkResult:
    """Approve, hold, mark as spam, trash or delete (for good) many comments at once."""
    changed, missing = await service.bulk(session, data.ids, data.action)
    await session.commit()
    return BulkResult(changed=changed, not_found=missing)


def _is_moderator(principal: Principal | None) -> bool:
    return principal is not None and principal.can("comments:moderate")


async def _own(session: SessionDep, comment_id: int, token: str | None) -> Comment:
    comment = await service.get(session, comment_id)
    if not service.owns(comment, token):
        raise NotFound(f"No comment {comment_id}.")
    return comment


@router.get(
    "/comments/{comment_id}",
    response_model=CommentPublic | CommentOwn | CommentAdmin,
    responses=responses(401, 404),
    operation_id="readComment",
    summary="Read a comment",
)
async def read_comment(
    session: SessionDep,
    principal: OptionalPrincipal,
    comment_id: IdPath,
    token: CommentToken = None,
) -> Response:
    """Readers see approved comments; the commenter (with `X-Comment-Token`) sees their
    own, even while it awaits moderation; moderators see everything."""
    comment = await service.get(session, comment_id)
    if _is_moderator(principal):
        return json(CommentAdmin.model_validate(comment))
    if token is not None and service.owns(comment, token):
        if comment.status in (CommentState.trash, CommentState.deleted):
            raise NotFound(f"No comment {comment_id}.")
        own = _own_view(comment)
        return json(
            CommentOwn(**own.model_dump(exclude={"edit_token"})), headers={"Cache-Control": PRIVATE}
        )
    if comment.status != CommentState.approved:
        raise NotFound(f"No comment {comment_id}.")
    return keys.label(json(_public(comment)), [keys.comments(comment.article_id)])


@router.patch(
    "/comments/{comment_id}",
    response_model=CommentOwn | CommentAdmin,
    responses=responses(401, 403, 404, 413, 415, 422),
    operation_id="editComment",
    summary="Edit or moderate a comment",
)
async def edit_comment(
    request: Request,
    session: SessionDep,
    principal: OptionalPrincipal,
    comment_id: IdPath,
    data: CommentEdit,
    token: CommentToken = None,
) -> Response:
    """Moderators change `status` and `content`. A commenter changes their own `content`
    with `X-Comment-Token` while the edit window is open."""
    if _is_moderator(principal):
        comment = await service.get(session, comment_id)
        await service.moderate(session, comment, status=data.status, content=data.content)
        await session.commit()
        return json(CommentAdmin.model_validate(comment))
    if token is None:
        if principal is not None:
            raise Forbidden("This needs a token with comments:moderate.")
        raise Unauthorized("Send a moderator's bearer token or your X-Comment-Token.")
    comment = await _own(session, comment_id, token)
    if data.status is not None:
        raise Forbidden("Only moderators change a comment's status.")
    if data.content is not None:
        await service.edit_own(session, comment, data.content, app_settings(request))
        await session.commit()
    own = _own_view(comment)
    return json(
        CommentOwn(**own.model_dump(exclude={"edit_token"})), headers={"Cache-Control": PRIVATE}
    )


@router.delete(
    "/comments/{comment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404),
    operation_id="deleteComment",
    summary="Delete a comment",
)
async def delete_comment(
    session: SessionDep,
    principal: OptionalPrincipal,
    comment_id: IdPath,
    token: CommentToken = None,
) -> Response:
    """Moderators: the first delete moves a comment to the trash, a second removes it for
    good. A commenter (with `X-Comment-Token`, in the edit window) removes their own."""
    if _is_moderator(principal):
        await service.remove(session, await service.get(session, comment_id))
    elif token is not None:
        comment = await _own(session, comment_id, token)
        service.ensure_editable(comment)
        await service.remove(session, comment)
    elif principal is not None:
        raise Forbidden("This needs a token with comments:moderate.")
    else:
        raise Unauthorized("Send a moderator's bearer token or your X-Comment-Token.")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


privacy = APIRouter(prefix="/api/v1/privacy", tags=["privacy"])


@privacy.get(
    "/comments",
    response_model=list[CommentAdmin],
    responses=responses(401, 403, 422),
    summary="Export a commenter's data",
)
async def export_comments(
    session: SessionDep,
    _: PrivacyOfficer,
    email: Annotated[EmailStr, Query(description="The commenter's address.")],
) -> Response:
    """Every comment stored under this address, with everything kept about it (a GDPR
    access request)."""
    rows = await service.by_email(session, email.lower())
    body = (
        b"["
        + b",".join(CommentAdmin.model_validate(c).model_dump_json().encode() for c in rows)
        + b"]"
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": PRIVATE})


@privacy.post(
    "/comments/erase",
    response_model=ErasureResult,
    responses=responses(401, 403, 422),
    summary="Erase a commenter's data",
)
async def erase_comments(
    session: SessionDep, _: PrivacyOfficer, data: ErasureRequest
) -> ErasureResult:
    """Anonymise every comment of this address (name, email, website, IP address, user
    agent); with `delete_content`, remove what they wrote too (a GDPR erasure request)."""
    count = await service.erase(session, data.email, delete_content=data.delete_content)
    await session.commit()
    return ErasureResult(comments=count)
