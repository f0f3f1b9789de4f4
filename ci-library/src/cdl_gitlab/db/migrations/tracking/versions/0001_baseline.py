"""Baseline of the experiment tracker: the schema of experiments.sqlite before migrations.

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
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("started", sa.Text, nullable=False),
        sa.Column("ended", sa.Text),
        sqlite_autoincrement=True,
    )
    create_table_if_missing(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("hparams", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("started", sa.Text, nullable=False),
        sa.Column("ended", sa.Text),
        sqlite_autoincrement=True,
    )
    create_table_if_missing(
        "metrics",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
        sa.Column("grp", sa.Text, nullable=False),
        sa.Column("steps_completed", sa.Integer, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("reported", sa.Text, nullable=False),
    )
    create_table_if_missing(
        "checkpoints",
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
        sa.Column("uuid", sa.Text, nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("steps_completed", sa.Integer, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("reported", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
