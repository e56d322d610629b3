"""Every table, imported once so the metadata (and Alembic) sees the whole schema."""

from app.auth.models import ApiToken
from app.core.db import Base
from app.users.models import User

__all__ = ["ApiToken", "Base", "User"]
