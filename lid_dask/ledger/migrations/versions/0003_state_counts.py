"""Counts of files per run, state and error kind, kept exact by triggers on `files`.

Counting the files of a run by state is a scan of the run (half a second at 5 million files), and
the orchestrator, `lid-dask status` and `Run.status()` count often. The triggers update the
counts in the same transaction as the change, whoever writes `files`, so a read of a few rows
gives the exact answer. A file without an error kind counts under '' (a key cannot be NULL).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO run_state_counts (run_id, state, error_kind, n)
SELECT run_id, state, coalesce(error_kind, ''), count(*) FROM files GROUP BY run_id, state, coalesce(error_kind, '')
"""

# PostgreSQL: one statement-level trigger function for the three events, reading the transition
# tables, so a batch of 256 files costs one aggregate, not 256 row updates. Deleted files only
# decrement rows that still exist: deleting a run cascades to its counts and its files in either
# order. Rows are changed in key order, so concurrent writers lock them in the same order.
PG_FUNCTION = """
CREATE FUNCTION files_count_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE run_state_counts c SET n = c.n - d.n
        FROM (SELECT run_id, state, coalesce(error_kind, '') AS error_kind, count(*) AS n
              FROM old_rows GROUP BY 1, 2, 3) d
        WHERE c.run_id = d.run_id AND c.state = d.state AND c.error_kind = d.error_kind;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO run_state_counts (run_id, state, error_kind, n)
        SELECT run_id, state, coalesce(error_kind, ''), count(*) FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (run_id, state, error_kind) DO UPDATE SET n = run_state_counts.n + excluded.n;
    ELSE
        INSERT INTO run_state_counts (run_id, state, error_kind, n)
        SELECT run_id, state, error_kind, sum(d) FROM (
            SELECT run_id, state, coalesce(error_kind, '') AS error_kind, -1 AS d FROM old_rows
            UNION ALL
            SELECT run_id, state, coalesce(error_kind, ''), 1 FROM new_rows) AS changes
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (run_id, state, error_kind) DO UPDATE SET n = run_state_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER files_count_insert AFTER INSERT ON files REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION files_count_states()",
    "CREATE TRIGGER files_count_update AFTER UPDATE ON files REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION files_count_states()",
    "CREATE TRIGGER files_count_delete AFTER DELETE ON files REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION files_count_states()",
]

# SQLite has row triggers only; an update that leaves state and error kind alone (a lease
# extension) does not fire them.
SQLITE_TRIGGERS = [
    """CREATE TRIGGER files_count_insert AFTER INSERT ON files BEGIN
        INSERT INTO run_state_counts (run_id, state, error_kind, n)
        VALUES (new.run_id, new.state, coalesce(new.error_kind, ''), 1)
        ON CONFLICT (run_id, state, error_kind) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER files_count_update AFTER UPDATE OF run_id, state, error_kind ON files
    WHEN old.run_id IS NOT new.run_id OR old.state IS NOT new.state OR old.error_kind IS NOT new.error_kind BEGIN
        UPDATE run_state_counts SET n = n - 1
        WHERE run_id = old.run_id AND state = old.state AND error_kind = coalesce(old.error_kind, '');
        INSERT INTO run_state_counts (run_id, state, error_kind, n)
        VALUES (new.run_id, new.state, coalesce(new.error_kind, ''), 1)
        ON CONFLICT (run_id, state, error_kind) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER files_count_delete AFTER DELETE ON files BEGIN
        UPDATE run_state_counts SET n = n - 1
        WHERE run_id = old.run_id AND state = old.state AND error_kind = coalesce(old.error_kind, '');
    END""",
]


def upgrade() -> None:
    op.create_table(
        "run_state_counts",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("state", sa.String(16), primary_key=True),
        sa.Column("error_kind", sa.String(40), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    # Triggers first, then the backfill, in one transaction: on PostgreSQL creating a trigger locks
    # `files` against writes until commit, so no change falls between the count and the triggers.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for trigger in PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(BACKFILL)


def downgrade() -> None:
    for trigger in ("files_count_insert", "files_count_update", "files_count_delete"):
        op.execute(f"DROP TRIGGER {trigger} ON files" if op.get_bind().dialect.name == "postgresql"
                   else f"DROP TRIGGER {trigger}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION files_count_states()")
    op.drop_table("run_state_counts")
