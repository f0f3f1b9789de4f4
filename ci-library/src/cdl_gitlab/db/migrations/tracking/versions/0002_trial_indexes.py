"""Index the tracker's foreign keys: loading an experiment looks trials up by experiment and
metrics and checkpoints by trial, which scanned whole tables before.

Revision ID: 0002
Revises: 0001
"""

from cdl_gitlab.db.ops import create_index_if_missing

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_if_missing("ix_trials_experiment_id", "trials", ["experiment_id"])
    create_index_if_missing("ix_metrics_trial_id", "metrics", ["trial_id", "steps_completed"])
    create_index_if_missing("ix_checkpoints_trial_id", "checkpoints", ["trial_id"])


def downgrade() -> None:
    from alembic import op

    op.drop_index("ix_checkpoints_trial_id", "checkpoints")
    op.drop_index("ix_metrics_trial_id", "metrics")
    op.drop_index("ix_trials_experiment_id", "trials")
