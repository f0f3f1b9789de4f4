"""Engines for every CDL database: SQLite files (WAL, busy timeout) and PostgreSQL URLs.

On SQLite the driver's own transaction handling is switched off and SQLAlchemy's ``begin``
emits ``BEGIN`` itself, so DDL is transactional and :func:`write_transaction` can take the
database's write lock up front with ``BEGIN IMMEDIATE`` (the cross-process lock the local
registries rely on).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdl_gitlab.db.errors import DatabaseError

BUSY_TIMEOUT_S = 60.0
_BEGIN_OPTION = "cdl_sqlite_begin"


def normalize_url(url: str) -> str:
    """SQLAlchemy URL for a DSN: ``postgres(ql)://`` becomes ``postgresql+psycopg://``."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0] + "://…"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's begin event emits BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    with contextlib.suppress(sqlite3.OperationalError):  # another process switching to WAL
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` (a SQLite or PostgreSQL URL; ``postgres://`` DSNs are accepted)."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
            return engine
        if parsed.get_backend_name() == "postgresql":
            return sa.create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL or missing driver
        raise DatabaseError(f"cannot open database {redact(url)}: {exc}") from exc
    raise DatabaseError(f"unsupported database {redact(url)} (use SQLite or PostgreSQL)")


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that holds the write lock from its start (SQLite: ``BEGIN IMMEDIATE``)."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn
