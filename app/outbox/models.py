from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, utcnow
from app.webhooks.models import Webhook


class DeliveryKind(enum.StrEnum):
    webhook = "webhook"
    email = "email"
    purge = "purge"  # surrogate keys to purge from the configured CDN


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # not tried yet (or queued again by hand)
    sending = "sending"  # claimed by a worker; due again only if its lease runs out
    failed = "failed"  # the last attempt failed; tried again at next_attempt_at
    succeeded = "succeeded"
    gave_up = "gave_up"


# The states the worker picks up once next_attempt_at has come.
DUE = (DeliveryStatus.pending, DeliveryStatus.sending, DeliveryStatus.failed)


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, native_enum=False, length=16, validate_strings=True, name=name)


class Delivery(Base):
    """One message to send: a webhook POST or an email, with its attempts.

    `payload` is what goes out, frozen when the event happened: the exact JSON body of a
    webhook (so every attempt is signed over the same bytes), or an email's recipient,
    subject, text and headers (blanked once the email is sent or given up)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[DeliveryKind] = mapped_column(_enum(DeliveryKind, "delivery_kind"))
    webhook_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.pending
    )
    # Counted when an attempt starts (the claim), so a worker that dies mid-send still
    # uses one up; it is also the claim's fencing token (see app.outbox.service).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]

    webhook: Mapped[Webhook | None] = relationship(lazy="raise", passive_deletes=True)
