"""Baseline of the scoring database: ``scoring_records`` and ``scoring_feedback`` as
``create_all`` made them before migrations (feedback used to appear on first use).

Revision ID: 0001
"""

import sqlalchemy as sa

from cdl_gitlab.db.ops import create_index_if_missing, create_table_if_missing

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table_if_missing(
        "scoring_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("input_kind", sa.String(16), nullable=True),
        sa.Column("input_hash", sa.String(64), nullable=True),
        sa.Column("input_text", sa.Text, nullable=True),
        sa.Column("input_stats", sa.JSON, nullable=True),
        sa.Column("predicted", sa.String(256), nullable=True),
        sa.Column("probabilities", sa.JSON, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
    )
    create_index_if_missing(
        "ix_scoring_model_version_ts", "scoring_records", ["model", "version", "ts"]
    )
    create_index_if_missing("ix_scoring_request", "scoring_records", ["request_id"])
    create_table_if_missing(
        "scoring_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("truth", sa.String(256), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )
    create_index_if_missing(
        "ix_feedback_request_item", "scoring_feedback", ["request_id", "item_index"]
    )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
