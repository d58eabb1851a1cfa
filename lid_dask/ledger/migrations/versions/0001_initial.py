"""The first ledger schema: runs, files, results, predictions, attempts, workers.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("fingerprint", sa.JSON),
        sa.Column("lock_owner", sa.String(200)),
        sa.Column("lock_expires_at", TS),
    )
    op.create_table(
        "files",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("error_kind", sa.String(40)),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("run_id", "uri", name="files_run_uri"),
    )
    op.create_index("files_claim", "files", ["run_id", "state", "due_at"])
    op.create_table(
        "results",
        sa.Column("file_id", ID, sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("language", sa.String(40)),
        sa.Column("confidence", sa.Float),
        sa.Column("agreement", sa.String(16)),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("review_reasons", sa.String(200)),
        sa.Column("duration", sa.Float),
        sa.Column("speech_seconds", sa.Float),
        sa.Column("worker", sa.String(200)),
        sa.Column("finished_at", TS, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("file_id", ID, sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("language", sa.String(40)),
        sa.Column("probability", sa.Float),
        sa.Column("top", sa.JSON),
        sa.Column("windows_disagree", sa.Boolean),
    )
    op.create_table(
        "attempts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("file_id", ID, sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_kind", sa.String(40)),
        sa.Column("error", sa.Text),
    )
    op.create_index("attempts_file", "attempts", ["file_id"])
    op.create_table(
        "workers",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("workers", "attempts", "predictions", "results", "files", "runs"):
        op.drop_table(table)
