"""staff comments: a comment posted with a newsroom member's token is marked as theirs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 20:00:00.000000+00:00

Readers see `staff: true` on such a comment. Comments stored before are readers' as far as
anyone knows, so they stay unmarked.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "comments",
        sa.Column("by_staff", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("comments") as batch:
        batch.drop_column("by_staff")
