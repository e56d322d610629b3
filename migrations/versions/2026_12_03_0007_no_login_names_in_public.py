"""no login names in public: unnamed users become "Staff", slugs stop spelling logins

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00.000000+00:00

Until now a user created without a display name was shown under their login name, and the
author slug was made from it. Both were public (author pages, bylines, feeds, the `author`
filter). Here, on existing rows:

- a display name equal to the login name (the old fallback) becomes "Staff", the house
  byline new users get; an admin gives the real name afterwards;
- a slug made from the login name (the login slugified, perhaps with a `-2` suffix) that
  the display name does not also give is made again from the display name.

Data only; the schema does not change, so the downgrade has nothing to undo. It does not
put the login names back on purpose: that would publish them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from slugify import slugify

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNNAMED = "Staff"
SLUG_MAX = 80  # users.slug's length, as app.core.text.slugify makes them


def _slug(text: str) -> str:
    return slugify(text, max_length=SLUG_MAX, word_boundary=True) or "item"


def _from(base: str, slug: str) -> bool:
    """Whether `slug` is `base`, or `base-N` as a free slug is made (base cut to fit)."""
    if slug == base:
        return True
    head, _, tail = slug.rpartition("-")
    return tail.isdigit() and head == base[: SLUG_MAX - len(tail) - 1].rstrip("-")


def upgrade() -> None:
    users = sa.table(
        "users",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("display_name", sa.String),
        sa.column("slug", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(users.c.id, users.c.username, users.c.display_name, users.c.slug).order_by(
            users.c.id
        )
    ).all()
    taken = {row.slug for row in rows}
    for row in rows:
        name = UNNAMED if row.display_name == row.username else row.display_name
        slug = row.slug
        if _from(_slug(row.username), slug) and not _from(_slug(name), slug):
            taken.discard(slug)
            base, n, slug = _slug(name), 2, _slug(name)
            while slug in taken:
                suffix = f"-{n}"
                slug = base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix
                n += 1
            taken.add(slug)
        if (name, slug) != (row.display_name, row.slug):
            connection.execute(
                sa.update(users).where(users.c.id == row.id).values(display_name=name, slug=slug)
            )


def downgrade() -> None:
    pass
