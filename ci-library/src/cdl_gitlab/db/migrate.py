"""Bring a database to the newest revision of one schema, on first use, exactly once.

Each schema (``registry``, ``tracking``, ``labels``, ``scoring``) has its own Alembic script
directory under ``cdl_gitlab/db/migrations/`` and its own version table, so schemas that
share a PostgreSQL database (labels and scoring on the cluster profile) migrate
independently. No ``alembic.ini`` or ``env.py`` is involved: :func:`ensure_schema` runs the
revisions itself, inside one transaction that first takes a lock (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so two processes opening a new
database at once serialise: the second finds the schema current and does nothing.

A database written before migrations existed has the tables but no version table; the
baseline revisions create only the tables that are missing (after checking that the ones
present have today's columns), so such a database is adopted at the baseline and then
upgraded like any other.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cdl_gitlab.db.engine import redact, write_transaction
from cdl_gitlab.db.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schema:
    """One schema's revisions and where a database records its revision.

    ``attributes`` reach the revisions as ``op.get_context().config.attributes`` (the labels
    schema gets its table name this way)."""

    name: str
    version_table: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> Path:
        return MIGRATIONS / self.name


@cache
def _scripts(location: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory  # alembic costs ~0.1 s to import: only on use

    if not (location / "versions").is_dir():
        raise DatabaseError(f"no migrations for schema {location.name!r} in {location}")
    return ScriptDirectory(str(location))


def head_revision(schema: Schema) -> str:
    head = _scripts(schema.location).get_current_head()
    if head is None:
        raise DatabaseError(f"schema {schema.name!r} has no revisions")
    return head


_ASSIGNMENT = re.compile(
    r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:"([^"]*)"|'([^']*)'|(None))\s*$""",
    re.MULTILINE,
)


@cache
def declared_head(location: Path) -> str | None:
    """The head revision of a schema whose revision files form one chain, read from their
    ``revision = "..."`` and ``down_revision = ...`` lines without importing Alembic (about
    0.25 s of every process that opens a database); None when the files are anything else
    (a merge, a branch, an assignment this does not read): then Alembic decides."""
    parents: dict[str, str | None] = {}
    for path in sorted((location / "versions").glob("*.py")):
        if path.name == "__init__.py":
            continue
        values = {
            match[1]: match[2] or match[3] or None
            for match in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8"))
        }
        if "revision" not in values or "down_revision" not in values or not values["revision"]:
            return None
        parents[str(values["revision"])] = values["down_revision"]
    heads = set(parents) - set(parents.values())
    roots = [revision for revision, parent in parents.items() if parent is None]
    if len(heads) != 1 or len(roots) != 1 or len(set(parents.values())) != len(parents):
        return None
    return heads.pop()


def current_revision(engine: sa.Engine, schema: Schema) -> str | None:
    """The revision the database is at (None: never migrated)."""
    versions = sa.table(schema.version_table, sa.column("version_num"))
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(schema.version_table):
            return None
        heads = conn.execute(sa.select(versions.c.version_num)).scalars().all()
    if len(heads) > 1:
        raise DatabaseError(f"{schema.version_table} holds several revisions: {heads}")
    return heads[0] if heads else None


def _lock_key(name: str) -> int:
    """A stable signed 32-bit key for ``pg_advisory_xact_lock``."""
    return zlib.crc32(name.encode()) - 2**31


def ensure_schema(engine: sa.Engine, schema: Schema) -> None:
    """Upgrade the database behind ``engine`` to ``schema``'s head revision if it is not there
    (Alembic is imported only to upgrade, or when :func:`declared_head` cannot tell the head)."""
    head = declared_head(schema.location) or head_revision(schema)
    try:
        if current_revision(engine, schema) == head:
            return
        _upgrade(engine, schema)
    except Exception as exc:
        raise DatabaseError(
            f"cannot migrate the {schema.name} schema of {redact(str(engine.url))} "
            f"to revision {head}: {exc}"
        ) from exc


def _upgrade(engine: sa.Engine, schema: Schema) -> None:
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext

    scripts = _scripts(schema.location)
    config = Config()
    config.set_main_option("script_location", str(schema.location))
    config.attributes.update(schema.attributes)

    def steps(revision: Any, _context: MigrationContext) -> Any:
        return scripts._upgrade_revs("head", revision)  # what `alembic upgrade head` runs

    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(schema.version_table))))
        with EnvironmentContext(config, scripts, fn=steps, destination_rev="head") as env:
            env.configure(connection=conn, version_table=schema.version_table)
            before = env.get_context().get_current_heads()
            if not before and sa.inspect(conn).get_table_names():
                log.info("adopting %s (tables without %s)", redact(str(engine.url)), schema.name)
            env.run_migrations()
