from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.schemas import InputModel, WebUrl
from app.outbox.models import DeliveryStatus

WebhookEvent = Literal[
    "article.published",
    "article.updated",
    "article.unpublished",
    "article.deleted",
    "comment.approved",
    "media.created",
    "media.updated",
    "media.deleted",
]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)

_EVENTS_DESCRIPTION = (
    "What to be told about: `article.published`, `article.updated`, `article.unpublished`, "
    "`article.deleted`, `comment.approved`, `media.created`, `media.updated`, `media.deleted`."
)


def _unique(events: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(events)) if events is not None else None


class WebhookCreate(InputModel):
    url: WebUrl = Field(
        description="Receiver, http or https, on a public address. Redirects are not followed."
    )
    events: list[WebhookEvent] = Field(
        min_length=1, max_length=len(EVENTS), description=_EVENTS_DESCRIPTION
    )
    description: str | None = Field(None, max_length=500)
    active: bool = Field(True, description="Inactive webhooks get no new deliveries.")

    _dedupe = field_validator("events")(_unique)


class WebhookUpdate(InputModel):
    """Only the fields sent change."""

    url: WebUrl | None = None
    events: list[WebhookEvent] | None = Field(
        None, min_length=1, max_length=len(EVENTS), description=_EVENTS_DESCRIPTION
    )
    description: str | None = Field(None, max_length=500)
    active: bool | None = Field(None, description="Set true again after a 410 disabled it.")

    _dedupe = field_validator("events")(_unique)


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    description: str | None
    active: bool = Field(description="False when switched off, or after the receiver said 410.")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Shown this once: verify each delivery's `Webhook-Signature` with it."
    )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Also the payload's `id` and the `Webhook-Id` header.")
    webhook_id: int
    event: str
    status: DeliveryStatus = Field(
        description="`pending` (not tried yet), `sending` (an attempt is under way), `failed` "
        "(tried again at `next_attempt_at`), `succeeded` or `gave_up`."
    )
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
