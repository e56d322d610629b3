from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class CommentState(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    spam = "spam"
    trash = "trash"
    # Removed for good but kept, emptied, because replies still hang from it.
    deleted = "deleted"


class Comment(Base):
    """A reader's reply. Email, IP address and user agent are private: they exist only on
    the moderators' schema, never on a public one."""

    __tablename__ = "comments"
    __table_args__ = (
        # Public threads: an article's approved comments by thread, oldest first.
        Index("ix_comments_article_status_root", "article_id", "status", "root_id"),
        Index("ix_comments_article_parent_created", "article_id", "parent_id", "created_at"),
        Index("ix_comments_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    # The top-level comment of the thread (its own id for a top-level comment).
    root_id: Mapped[int | None] = mapped_column(Integer, index=True)
    depth: Mapped[int] = mapped_column(default=0)
    status: Mapped[CommentState] = mapped_column(
        Enum(
            CommentState, native_enum=False, length=16, validate_strings=True, name="comment_state"
        )
    )
    author_name: Mapped[str] = mapped_column(String(100))
    author_email: Mapped[str | None] = mapped_column(String(320), index=True)
    author_url: Mapped[str | None] = mapped_column(String(2048))
    content_source: Mapped[str] = mapped_column(Text)
    content_html: Mapped[str] = mapped_column(Text)
    ip_address: Mapped[str | None] = mapped_column(String(45), index=True)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    edit_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    edit_expires_at: Mapped[datetime | None]
    anonymised_at: Mapped[datetime | None]
    # "Email me when someone replies" (app.mail): asked for when posting.
    notify_replies: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Posted by a member of the newsroom, signed in (readers see a staff marker).
    by_staff: Mapped[bool] = mapped_column(default=False, server_default=false())
    # On a reply: the SHA-256 of the unsubscribe token in the one email that told the parent's
    # author about this reply (so every link ever sent keeps working), which also marks the
    # reply as announced.
    unsubscribe_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
