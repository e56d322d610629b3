"""listing generation: a counter every change to what lists contain moves

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 11:20:00.000000+00:00

Totals of article lists are remembered per generation (app.articles.totals). Triggers move
the counter in the same transaction as any change that can alter which articles a listing
holds, so the new counter and the new rows become visible together. Comment counts and
other display-only columns are left out on purpose: a reader's comment must not make every
list recount. On SQLite, a later batch migration of a watched table copies the table and
loses its triggers: such a migration must create them again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "listing_generation"
# What a listing's membership depends on: visibility, filters and the search text.
ARTICLE_COLUMNS = (
    "status, published_at, category_id, author_id, number, title, kicker, excerpt, body"
)
# (table, events) for PostgreSQL statement-level triggers.
WATCHED = (
    ("articles", f"INSERT OR DELETE OR TRUNCATE OR UPDATE OF {ARTICLE_COLUMNS}"),
    ("article_tags", "INSERT OR DELETE OR TRUNCATE OR UPDATE"),
    ("article_categories", "INSERT OR DELETE OR TRUNCATE OR UPDATE"),
    ("categories", "INSERT OR DELETE OR TRUNCATE OR UPDATE"),
    ("tags", "DELETE OR TRUNCATE OR UPDATE OF slug"),
    ("users", "DELETE OR TRUNCATE OR UPDATE OF slug"),
)
# SQLite has row-level triggers only, one event each.
SQLITE_EVENTS = {
    "articles": ("INSERT", "DELETE", f"UPDATE OF {ARTICLE_COLUMNS}"),
    "article_tags": ("INSERT", "DELETE", "UPDATE"),
    "article_categories": ("INSERT", "DELETE", "UPDATE"),
    "categories": ("INSERT", "DELETE", "UPDATE"),
    "tags": ("DELETE", "UPDATE OF slug"),
    "users": ("DELETE", "UPDATE OF slug"),
}
BUMP = "UPDATE listing_generation SET value = value + 1 WHERE id = 1"


def _sqlite_name(table: str, event: str) -> str:
    return f"trg_{table}_listing_{event.split()[0].lower()}"


def upgrade() -> None:
    op.execute(
        f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL)"
    )
    op.execute("INSERT INTO listing_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_listing_generation() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table, events in WATCHED:
            op.execute(
                f"CREATE TRIGGER trg_{table}_listing AFTER {events} ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION bump_listing_generation()"
            )
        return
    for table, events in SQLITE_EVENTS.items():
        for event in events:
            op.execute(
                f"CREATE TRIGGER {_sqlite_name(table, event)} AFTER {event} ON {table} "
                f"BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _events in WATCHED:
            op.execute(f"DROP TRIGGER trg_{table}_listing ON {table}")
        op.execute("DROP FUNCTION bump_listing_generation()")
    else:
        for table, events in SQLITE_EVENTS.items():
            for event in events:
                op.execute(f"DROP TRIGGER {_sqlite_name(table, event)}")
    op.execute(f"DROP TABLE {TABLE}")
