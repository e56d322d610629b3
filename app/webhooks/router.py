from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security, status

from app.core.config import app_settings
from app.core.db import SessionDep
from app.core.openapi import responses
from app.core.pagination import Page, PageParams, page_params, set_page_headers
from app.core.schemas import IdPath
from app.core.security import Principal, current_principal
from app.outbox.models import DeliveryStatus
from app.webhooks import service
from app.webhooks.models import Webhook
from app.webhooks.schemas import (
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

Admin = Annotated[Principal, Security(current_principal, scopes=["webhooks:manage"])]


async def _webhook(session: SessionDep, _: Admin, webhook_id: IdPath) -> Webhook:
    return await service.get(session, webhook_id)


WebhookDep = Annotated[Webhook, Depends(_webhook)]


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 413, 415, 422),
    summary="Register a webhook",
)
async def create_webhook(
    request: Request, response: Response, session: SessionDep, _: Admin, data: WebhookCreate
) -> WebhookCreated:
    """Every event in `events` is POSTed to `url` as JSON:
    `{"id", "event", "occurred_at", "data"}`, signed with the `secret` returned here, and
    only here (headers `Webhook-Id`, `Webhook-Timestamp`, `Webhook-Signature: v1=<hex>`;
    see the README). A URL on a private, loopback, link-local, multicast, reserved or
    unspecified address is a 422."""
    hook = await service.create(session, data, app_settings(request))
    await session.commit()
    response.headers["Location"] = f"/api/v1/webhooks/{hook.id}"
    return WebhookCreated(**WebhookOut.model_validate(hook).model_dump(), secret=hook.secret)


@router.get(
    "",
    response_model=Page[WebhookOut],
    responses=responses(401, 403, 422),
    summary="List webhooks",
)
async def list_webhooks(
    request: Request,
    response: Response,
    session: SessionDep,
    _: Admin,
    params: Annotated[PageParams, Depends(page_params)],
) -> Page[WebhookOut]:
    rows, total = await service.list_webhooks(session, offset=params.offset, limit=params.per_page)
    set_page_headers(request, response, total=total, params=params)
    return Page[WebhookOut].of([WebhookOut.model_validate(h) for h in rows], total, params)


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    responses=responses(401, 403, 404, 422),
    summary="Read a webhook",
)
async def read_webhook(hook: WebhookDep) -> WebhookOut:
    """The secret is not shown again."""
    return WebhookOut.model_validate(hook)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    responses=responses(401, 403, 404, 413, 415, 422),
    summary="Change a webhook",
)
async def update_webhook(
    request: Request, session: SessionDep, hook: WebhookDep, data: WebhookUpdate
) -> WebhookOut:
    """Only the fields sent change; a new `url` is checked like a new webhook's."""
    # The fields sent, as validated (a dump would re-serialise the URL).
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    await service.update(session, hook, changes, app_settings(request))
    await session.commit()
    return WebhookOut.model_validate(hook)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(401, 403, 404, 422),
    summary="Delete a webhook",
)
async def delete_webhook(session: SessionDep, hook: WebhookDep) -> Response:
    """With its delivery log; queued deliveries are dropped."""
    await service.remove(session, hook)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryOut],
    responses=responses(401, 403, 404, 422),
    summary="A webhook's deliveries",
)
async def list_deliveries(
    request: Request,
    response: Response,
    session: SessionDep,
    hook: WebhookDep,
    params: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[DeliveryOut]:
    """Newest first: each with its status, attempts, the receiver's last status code, the
    last error and when it is tried next. Failed attempts are retried with exponential
    backoff (10 s doubling, at most an hour apart) up to `WEBHOOK_MAX_ATTEMPTS`."""
    rows, total = await service.deliveries(
        session, hook, status=status_, offset=params.offset, limit=params.per_page
    )
    set_page_headers(request, response, total=total, params=params)
    return Page[DeliveryOut].of([DeliveryOut.model_validate(d) for d in rows], total, params)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(401, 403, 404, 409, 422),
    summary="Send a delivery again",
)
async def redeliver(session: SessionDep, hook: WebhookDep, delivery_id: uuid.UUID) -> DeliveryOut:
    """Queue it again now, with a fresh set of attempts and the same body (same `id`).
    409 while it is being sent, or when the webhook is disabled."""
    delivery = await service.redeliver(session, hook, delivery_id)
    await session.commit()
    return DeliveryOut.model_validate(delivery)
