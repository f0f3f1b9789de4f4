"""The experiment tracker's tables (schema ``tracking``; revisions in
``cdl_gitlab/db/migrations/tracking``)."""

from __future__ import annotations

import sqlalchemy as sa

from cdl_gitlab.db import Schema

SCHEMA = Schema("tracking", "cdl_tracking_revision")

metadata = sa.MetaData()
experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("started", sa.Text, nullable=False),
    sa.Column("ended", sa.Text),
    sqlite_autoincrement=True,
)
trials = sa.Table(
    "trials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("hparams", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("started", sa.Text, nullable=False),
    sa.Column("ended", sa.Text),
    sa.Index("ix_trials_experiment_id", "experiment_id"),
    sqlite_autoincrement=True,
)
# ids: INTEGER PRIMARY KEY without NOT NULL, as before migrations (a rowid alias is never NULL)
# metrics and checkpoints have no key of their own: rows keep SQLite's insertion order (rowid)
metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
    sa.Column("grp", sa.Text, nullable=False),
    sa.Column("steps_completed", sa.Integer, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("reported", sa.Text, nullable=False),
    sa.Index("ix_metrics_trial_id", "trial_id", "steps_completed"),
)
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
    sa.Column("uuid", sa.Text, nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("steps_completed", sa.Integer, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("reported", sa.Text, nullable=False),
    sa.Index("ix_checkpoints_trial_id", "trial_id"),
)
rowid = sa.literal_column("rowid")
