"""The local model registry's tables (schema ``registry``; revisions in
``cdl_gitlab/db/migrations/registry``)."""

from __future__ import annotations

import sqlalchemy as sa

from cdl_gitlab.db import Schema

SCHEMA = Schema("registry", "cdl_registry_revision")

metadata = sa.MetaData()
models = sa.Table(
    "models",
    metadata,
    # nullable: SQLite lets a TEXT primary key be NULL unless it says NOT NULL (today's DDL)
    sa.Column("name", sa.Text, primary_key=True, nullable=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("labels", sa.Text, nullable=False, server_default="[]"),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("last_version", sa.Integer, nullable=False, server_default=sa.text("0")),
)
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("model", sa.Text, sa.ForeignKey("models.name"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("checkpoint_uuid", sa.Text, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
    sa.PrimaryKeyConstraint("model", "version"),
)
