from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import Id, InputModel
from app.core.security import SCOPES, Scope


class AccessToken(BaseModel):
    """OAuth2 token response (RFC 6749 §5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the token expires.")
    scope: str = Field(description="Space-separated scopes the token carries.")


class LoginForm(InputModel):
    """The OAuth2 password form (RFC 6749 §4.3.2), as `/docs`' Authorize button sends it."""

    # Unrecognised parameters are ignored (RFC 6749 §3.2), and a password is taken exactly
    # as typed, spaces included.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    grant_type: str | None = Field(None, pattern="^password$")
    username: str
    password: str
    scope: str = Field("", description="Space-separated scopes that narrow the token.")
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()


class ApiTokenCreate(InputModel):
    name: str = Field(min_length=1, max_length=100, description="What the token is for.")
    scopes: Annotated[list[Scope], Field(max_length=len(SCOPES))] | None = Field(
        None,
        description="Narrow the token to these scopes; absent means all that the owner's "
        "role allows. Scopes the role does not allow are refused.",
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="Absent means the token does not expire."
    )
    user_id: Id | None = Field(None, description="Admins only: create the token for this user.")


class ApiTokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    kind: Literal["api", "session"]
    name: str
    prefix: str = Field(description="First characters of the token, to recognise it by.")
    scopes: list[str] | None = Field(description="null: everything the owner's role allows.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenPublic):
    token: str = Field(description="The secret. Shown this once; only a digest is stored.")
