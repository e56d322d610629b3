from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from app.comments.models import CommentState
from app.core.schemas import Id, InputModel, WebUrl

Content = Annotated[
    str,
    Field(
        min_length=1,
        max_length=10_000,
        description="Plain text. Blank lines make paragraphs; bare URLs become links; "
        "<b>, <strong>, <i>, <em>, <code>, <q>, <del> and <a href> are kept, the rest escaped.",
    ),
]


class CommentCreate(InputModel):
    """A reader's reply ("Leave a Reply"). Required fields: name, email, content."""

    author_name: str = Field(min_length=1, max_length=100, description="Shown with the comment.")
    author_email: EmailStr = Field(
        description="Required, never published. Syntax-checked (at most 254 characters), "
        "not looked up."
    )
    author_url: WebUrl | None = Field(None, description="Optional http(s) website.")
    content: Content
    parent_id: Id | None = Field(None, description="Reply to this (visible) comment.")
    notify_replies: bool = Field(
        False, description="Email me when someone replies (each email has an unsubscribe link)."
    )
    website: str | None = Field(
        None,
        max_length=2048,
        description="Leave empty: a hidden form field that only bots fill in.",
    )

    @field_validator("author_email")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


class CommentEdit(InputModel):
    """A moderator may change status and content; a commenter, within the edit window and
    with the edit token, the content only."""

    content: Content | None = None
    status: Literal["pending", "approved", "spam", "trash"] | None = None


class BulkAction(InputModel):
    ids: list[Id] = Field(min_length=1, max_length=500)
    action: Literal["approve", "hold", "spam", "trash", "delete"] = Field(
        description="approve, hold (pending), spam, trash, or delete for good."
    )


class BulkResult(BaseModel):
    changed: list[int]
    not_found: list[int]


class CommentPublic(BaseModel):
    """A comment as every reader sees it. A removed comment that still has visible replies
    is a placeholder: `removed` true, no author, no content."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    article_id: int
    parent_id: int | None
    depth: int = Field(description="0 for a top-level comment.")
    author_name: str | None
    author_url: str | None
    content: str | None = Field(description="Safe HTML.")
    created_at: datetime
    removed: bool = False
    staff: bool = Field(
        False, description="Posted by a member of the newsroom, signed in with their token."
    )


class CommentThreaded(CommentPublic):
    replies: list[CommentThreaded] = Field(default_factory=list)


class CommentOwn(CommentPublic):
    """The commenter's own view (with the edit token): the moderation status too."""

    status: CommentState
    edit_expires_at: datetime | None


class CommentCreated(CommentOwn):
    edit_token: str | None = Field(
        description="Shown once: send as `X-Comment-Token` to read, edit or delete this "
        "comment until `edit_expires_at`."
    )


class CommentAdmin(BaseModel):
    """The moderators' view: includes the private fields."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    article_id: int
    parent_id: int | None
    depth: int
    status: CommentState
    author_name: str
    author_email: str | None
    author_url: str | None
    content: str = Field(validation_alias="content_html")
    content_source: str
    ip_address: str | None
    user_agent: str | None
    created_at: datetime
    updated_at: datetime


class ErasureRequest(InputModel):
    email: EmailStr
    delete_content: bool = Field(False, description="Also remove what they wrote.")

    @field_validator("email")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


class ErasureResult(BaseModel):
    comments: int = Field(description="Comments anonymised.")
