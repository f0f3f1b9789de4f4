"""Helpers for baseline revisions: create what is missing, check what exists.

A baseline reproduces the schema that code before migrations created with
``CREATE TABLE IF NOT EXISTS`` / ``create_all``; databases written by that code are adopted by
running the baseline, which creates only the missing tables and indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cdl_gitlab.db.errors import DatabaseError


def create_table_if_missing(name: str, *columns: sa.SchemaItem, **kw: object) -> None:
    """``op.create_table`` unless ``name`` exists; an existing table must have the columns."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(name):
        op.create_table(name, *columns, **kw)
        return
    present = {column["name"] for column in inspector.get_columns(name)}
    wanted = {item.name for item in columns if isinstance(item, sa.Column)}
    if missing := sorted(wanted - present):
        raise DatabaseError(
            f"table {name} exists but lacks the columns {', '.join(missing)}: it was not "
            "written by CDL (or by an unknown version of it)"
        )


def create_index_if_missing(name: str, table: str, columns: list[str]) -> None:
    """``op.create_index`` unless ``table`` already has an index called ``name``."""
    existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes(table)}
    if name not in existing:
        op.create_index(name, table, columns)
