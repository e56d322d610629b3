from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, utcnow

if TYPE_CHECKING:
    from app.categories.models import Category
    from app.media.models import Media
    from app.tags.models import Tag
    from app.users.models import User


class ArticleStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    published = "published"
    archived = "archived"


class CommentStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(cls, native_enum=False, length=16, validate_strings=True, name=name)


# Every category an article is filed in, the primary one included, so one join filters all.
article_categories = Table(
    "article_categories",
    Base.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "category_id", ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
)

article_tags = Table(
    "article_tags",
    Base.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        # The public listing: visible articles newest first, by keyset (published_at, id).
        Index("ix_articles_status_published", "status", "published_at", "id"),
        # The public listing in (published_at, id) order: a partial index whose predicate is
        # the visibility test, so the newest public articles are read straight off it.
        Index(
            "ix_articles_public_published",
            "published_at",
            "id",
            postgresql_where=text("status IN ('published', 'scheduled')"),
            sqlite_where=text("status IN ('published', 'scheduled')"),
        ),
        Index("ix_articles_category_published", "category_id", "published_at", "id"),
        Index("ix_articles_author_published", "author_id", "published_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    title: Mapped[str] = mapped_column(String(300))
    kicker: Mapped[str | None] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    excerpt: Mapped[str] = mapped_column(Text)
    excerpt_given: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[ArticleStatus] = mapped_column(_enum(ArticleStatus, "article_status"))
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    byline: Mapped[str | None] = mapped_column(String(200))
    source_name: Mapped[str | None] = mapped_column(String(200))
    source_url: Mapped[str | None] = mapped_column(String(2048))
    featured_image_url: Mapped[str | None] = mapped_column(String(2048))
    featured_image_caption: Mapped[str | None] = mapped_column(String(500))
    featured_media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), index=True
    )
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT")
    )
    comment_status: Mapped[CommentStatus] = mapped_column(
        _enum(CommentStatus, "comment_status"), default=CommentStatus.open
    )
    comments_close_at: Mapped[datetime | None]
    word_count: Mapped[int] = mapped_column(default=0)
    comment_count: Mapped[int] = mapped_column(default=0)
    # Bumped on every write: the optimistic-concurrency version behind ETag / If-Match.
    version: Mapped[int] = mapped_column(default=1)

    author: Mapped[User] = relationship(lazy="raise")
    category: Mapped[Category | None] = relationship(lazy="raise")
    categories: Mapped[list[Category]] = relationship(
        secondary=article_categories, lazy="raise", order_by="Category.name"
    )
    tags: Mapped[list[Tag]] = relationship(
        secondary=article_tags, lazy="raise", order_by="Tag.name"
    )
    featured_media: Mapped[Media | None] = relationship(lazy="raise")
    # Written by the service from the body's <img data-media-id> (app.media.models).
    body_media: Mapped[list[Media]] = relationship(
        secondary="article_media", lazy="raise", viewonly=True, order_by="Media.id"
    )
    corrections: Mapped[list[Correction]] = relationship(
        lazy="raise",
        order_by="Correction.noted_at",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it


class ArticleSlug(Base):
    """A retired slug; requests for it redirect to the article's current slug."""

    __tablename__ = "article_slugs"

    slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    retired_at: Mapped[datetime] = mapped_column(default=utcnow)


class Revision(Base):
    """The version of an article's text before a change, with who changed it and when."""

    __tablename__ = "article_revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(300))
    kicker: Mapped[str | None] = mapped_column(String(200))
    excerpt: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who replaced this version (the change's author), null if that account was deleted.
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    changed_by: Mapped[User | None] = relationship(lazy="raise")


class CorrectionKind(enum.StrEnum):
    correction = "correction"
    update = "update"


class Correction(Base):
    """A dated correction or update note shown under the article."""

    __tablename__ = "article_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[CorrectionKind] = mapped_column(_enum(CorrectionKind, "correction_kind"))
    text: Mapped[str] = mapped_column(Text)
    noted_at: Mapped[datetime] = mapped_column(default=utcnow)
