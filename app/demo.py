"""Demo data for `make run`: a newsroom to click through on a fresh machine."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.users import service as users
from app.users.models import Role
from app.users.schemas import UserCreate

DEMO_PASSWORD = "newsroom-demo"  # noqa: S105 - demo only; seed-demo refuses production


async def load_demo(session: AsyncSession) -> str:
    if await users.by_username(session, "admin") is not None:
        return "demo data already loaded"
    await users.create(
        session, UserCreate(username="admin", password=DEMO_PASSWORD, role=Role.admin)
    )
    await users.create(
        session,
        UserCreate(
            username="editor", password=DEMO_PASSWORD, role=Role.editor, display_name="Desk Editor"
        ),
    )
    return f"demo data loaded; log in as admin / {DEMO_PASSWORD}"
