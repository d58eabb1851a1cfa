"""Evaluations, calibrations and reviewed ground truth.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("fingerprints", sa.JSON),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_index("evaluations_dataset", "evaluations", ["dataset", "id"])
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("ece_before", sa.Float),
        sa.Column("ece_after", sa.Float),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("calibrations_model", "calibrations", ["model", "id"])
    op.create_table(
        "labels",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("uri", sa.Text, primary_key=True),
        sa.Column("language", sa.String(40), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("labels", "calibrations", "evaluations"):
        op.drop_table(table)
