"""Accept rules: which answers need no review, fitted on labelled files at a target precision.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accept_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("models_key", sa.String(400), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("calibrations", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("labels_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("accept_rules_models", "accept_rules", ["models_key", "id"])


def downgrade() -> None:
    op.drop_table("accept_rules")
