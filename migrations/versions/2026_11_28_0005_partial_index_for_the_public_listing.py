"""partial index for the public listing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:39:45.654837+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_articles_public_published",
            ["published_at", "id"],
            unique=False,
            postgresql_where=sa.text("status IN ('published', 'scheduled')"),
            sqlite_where=sa.text("status IN ('published', 'scheduled')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_articles_public_published",
            postgresql_where=sa.text("status IN ('published', 'scheduled')"),
            sqlite_where=sa.text("status IN ('published', 'scheduled')"),
        )
