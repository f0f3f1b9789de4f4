"""The database layer: engines for SQLite and PostgreSQL, and schema migrations.

Every CDL table (model registry, experiment tracker, labels, scoring data and feedback) goes
through :func:`create_engine` and is brought to the newest schema by :func:`ensure_schema`
on first use (Alembic revisions shipped under ``cdl_gitlab/db/migrations/<schema>/``).
"""

from cdl_gitlab.db.engine import (
    create_engine,
    normalize_url,
    redact,
    sqlite_url,
    write_transaction,
)
from cdl_gitlab.db.errors import DatabaseError
from cdl_gitlab.db.migrate import Schema, current_revision, ensure_schema, head_revision

__all__ = [
    "DatabaseError",
    "Schema",
    "create_engine",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "normalize_url",
    "redact",
    "sqlite_url",
    "write_transaction",
]
