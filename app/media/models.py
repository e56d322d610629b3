"""The media library's tables: one row per uploaded image, with its renditions' keys."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, utcnow

if TYPE_CHECKING:
    from app.users.models import User


class Media(Base):
    """An image and everything made from it. `sizes` maps a rendition's name ("full",
    "w640", "w640-webp", "crop-16x9-…") to its storage key, width, height and type; the
    files live in the storage backend under `folder`."""

    __tablename__ = "media"
    __table_args__ = (Index("ix_media_created", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uploader_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    folder: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int]
    height: Mapped[int]
    file_size: Mapped[int]
    title: Mapped[str] = mapped_column(String(300))
    alt_text: Mapped[str] = mapped_column(String(1000), default="")
    caption: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    credit: Mapped[str] = mapped_column(String(300), default="")
    copyright: Mapped[str] = mapped_column(String(300), default="")
    source_url: Mapped[str | None] = mapped_column(String(2048))
    focal_x: Mapped[float] = mapped_column(Float, default=0.5)
    focal_y: Mapped[float] = mapped_column(Float, default=0.5)
    taken_at: Mapped[datetime | None]
    sizes: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Where an imported item came from ("wp:{post id}"), so that a second import updates it.
    import_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    uploader: Mapped[User | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it


# Media an article's body shows (`<img data-media-id>`), kept on every save of the article,
# so deleting a photo still in use can be refused. The featured image is the article's column.
article_media = Table(
    "article_media",
    Base.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("media_id", ForeignKey("media.id", ondelete="CASCADE"), primary_key=True, index=True),
)
