from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.core.schemas import InputModel, WebUrl
from app.users.models import Role

Username = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Password = Annotated[
    str, Field(min_length=10, max_length=256, description="At least 10 characters.")
]


class UserCreate(InputModel):
    username: Username
    password: Password
    role: Role = Role.author
    email: EmailStr | None = None
    display_name: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        description='Byline name; "Staff" if absent (a login name is never shown).',
    )
    bio: str | None = Field(None, max_length=5000)
    avatar_url: WebUrl | None = None


class UserUpdate(InputModel):
    password: Password | None = None
    role: Role | None = None
    is_active: bool | None = Field(
        None, description="false deactivates the account: its tokens stop working at once."
    )
    email: EmailStr | None = None
    display_name: str | None = Field(None, min_length=1, max_length=120)
    bio: str | None = Field(None, max_length=5000)
    avatar_url: WebUrl | None = None


class UserAdmin(BaseModel):
    """A user as admins see it. Never served on a public endpoint."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None
    role: Role
    is_active: bool
    display_name: str
    slug: str
    bio: str | None
    avatar_url: str | None
    created_at: datetime
    updated_at: datetime


class UserMe(UserAdmin):
    scopes: list[str] = Field(description="What the token used for this request may do.")
