"""media library: uploaded images with credits and renditions, and articles' featured media

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 02:00:00.000000+00:00

`media` holds one row per image, its renditions' storage keys in `sizes`; the files are in
the storage backend, which a downgrade leaves alone. `article_media` records which media an
article's body shows, and `articles.featured_media_id` its featured image.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.db import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEATURED_FK = "fk_articles_featured_media_id_media"
# As revision 0006 defined them.
BUMP = "UPDATE listing_generation SET value = value + 1 WHERE id = 1"
SQLITE_ARTICLE_EVENTS = (
    "INSERT",
    "DELETE",
    "UPDATE OF status, published_at, category_id, author_id, number, title, kicker, excerpt, body",
)


def _listing_triggers_again() -> None:
    """SQLite changes a foreign key only by copying the table, which loses the triggers of
    0006 on it: they are made again, as 0006 made them."""
    for event in SQLITE_ARTICLE_EVENTS:
        name = f"trg_articles_listing_{event.split()[0].lower()}"
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON articles BEGIN {BUMP}; END")


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "uploader_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="fk_media_uploader_id_users", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("folder", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("file_size", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("alt_text", sa.String(1000), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("credit", sa.String(300), nullable=False),
        sa.Column("copyright", sa.String(300), nullable=False),
        sa.Column("source_url", sa.String(2048), nullable=True),
        sa.Column("focal_x", sa.Float(), nullable=False),
        sa.Column("focal_y", sa.Float(), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=True),
        sa.Column("sizes", sa.JSON(), nullable=False),
        sa.Column("import_key", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("import_key", name="uq_media_import_key"),
    )
    op.create_index("ix_media_uploader_id", "media", ["uploader_id"])
    op.create_index("ix_media_created", "media", ["created_at", "id"])
    op.create_table(
        "article_media",
        sa.Column(
            "article_id",
            sa.Integer(),
            sa.ForeignKey(
                "articles.id", name="fk_article_media_article_id_articles", ondelete="CASCADE"
            ),
            primary_key=True,
        ),
        sa.Column(
            "media_id",
            sa.Integer(),
            sa.ForeignKey("media.id", name="fk_article_media_media_id_media", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_article_media_media_id", "article_media", ["media_id"])
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("articles") as batch:
            batch.add_column(sa.Column("featured_media_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(
                FEATURED_FK, "media", ["featured_media_id"], ["id"], ondelete="SET NULL"
            )
        _listing_triggers_again()
    else:
        op.add_column("articles", sa.Column("featured_media_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            FEATURED_FK, "articles", "media", ["featured_media_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index("ix_articles_featured_media_id", "articles", ["featured_media_id"])


def downgrade() -> None:
    op.drop_index("ix_articles_featured_media_id", table_name="articles")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("articles") as batch:
            batch.drop_column("featured_media_id")
        _listing_triggers_again()
    else:
        op.drop_constraint(FEATURED_FK, "articles", type_="foreignkey")
        op.drop_column("articles", "featured_media_id")
    op.drop_table("article_media")
    op.drop_index("ix_media_created", table_name="media")
    op.drop_index("ix_media_uploader_id", table_name="media")
    op.drop_table("media")
