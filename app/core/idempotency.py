"""`Idempotency-Key` for POSTs: a retry with the same key replays the first answer.

Kept in the database, in the same transaction as the change it answers for, so a key and
its effect are stored together or not at all, whatever worker or process handles the retry."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import orjson
from sqlalchemy import LargeBinary, String, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow
from app.core.errors import InvalidInput

# Keys are honoured for at least 24 hours; they are purged after this.
KEY_LIFETIME = timedelta(hours=48)


class IdempotentResponse(Base):
    """The first answer to a POST sent with an `Idempotency-Key`, replayed on retries."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def request_hash(payload: object) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def lookup(
    session: AsyncSession, key: str, scope: str, fingerprint: str
) -> IdempotentResponse | None:
    """The stored answer for this key, if any. The same key with another body is a 422."""
    connection = await session.connection()
    row = (
        await connection.execute(
            _LOOKUP, {"key": key, "scope": scope, "since": utcnow() - KEY_LIFETIME}
        )
    ).first()
    if row is None:
        return None
    request_hash, status_code, body, location = row
    if request_hash != fingerprint:
        raise InvalidInput(
            "This Idempotency-Key was used with a different request body.",
            field="Idempotency-Key",
            location="header",
        )
    # A detached copy, for reading: Core, not an ORM load, on the hot path of a retry.
    return IdempotentResponse(
        key=key,
        scope=scope,
        request_hash=request_hash,
        status_code=status_code,
        body=body,
        location=location,
    )


_LOOKUP = select(
    IdempotentResponse.request_hash,
    IdempotentResponse.status_code,
    IdempotentResponse.body,
    IdempotentResponse.location,
).where(
    IdempotentResponse.key == bindparam("key"),
    IdempotentResponse.scope == bindparam("scope"),
    IdempotentResponse.created_at > bindparam("since"),
)


async def remember(
    session: AsyncSession,
    key: str,
    scope: str,
    fingerprint: str,
    *,
    status_code: int,
    body: bytes,
    location: str | None,
) -> None:
    """Store the answer in the caller's transaction. A concurrent request that stored the
    same key first makes this (or the commit) raise IntegrityError."""
    connection = await session.connection()
    await connection.execute(
        insert(IdempotentResponse).values(
            key=key,
            scope=scope,
            request_hash=fingerprint,
            status_code=status_code,
            body=body,
            location=location,
            created_at=utcnow(),
        )
    )


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotentResponse).where(IdempotentResponse.created_at <= utcnow() - KEY_LIFETIME)
    )
    return int(getattr(result, "rowcount", 0) or 0)
