"""Baseline of the local model registry: the schema of registry.sqlite before migrations.

Revision ID: 0001
"""

import sqlalchemy as sa

from cdl_gitlab.db.ops import create_table_if_missing

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table_if_missing(
        "models",
        # nullable: SQLite lets a TEXT primary key be NULL unless it says NOT NULL (today's DDL)
        sa.Column("name", sa.Text, primary_key=True, nullable=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("labels", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("last_version", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    create_table_if_missing(
        "versions",
        sa.Column("model", sa.Text, sa.ForeignKey("models.name"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("checkpoint_uuid", sa.Text, nullable=False),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("model", "version"),
    )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
