from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from app.core.errors import ServiceUnavailable
from app.core.openapi import responses

router = APIRouter(tags=["health"])

READY_TIMEOUT = 3.0


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process is up. Touches nothing else, so a slow database never restarts it."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=responses(503), summary="Readiness")
async def readyz(request: Request) -> Health:
    """The database answers. 503 (with `Retry-After`) while it does not."""
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        raise ServiceUnavailable("The database is not reachable.") from exc
    return Health(status="ok")
