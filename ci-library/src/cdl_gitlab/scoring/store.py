"""The Scoring Data store: one row per scored item (or per rejected request), SQLAlchemy 2.

The table is the contract with monitoring: it reads ``scoring_records`` by model, version and
time to build drift reports. Inputs are summarised, never stored whole: a SHA-256 of the item,
for text the first characters and simple counts, for images shape and pixel statistics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from cdl_gitlab.errors import CDLError

TABLE_NAME = "scoring_records"
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"

metadata = MetaData()
scoring_records = Table(
    TABLE_NAME,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("item_index", Integer, nullable=False, default=0),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("input_kind", String(16), nullable=True),
    Column("input_hash", String(64), nullable=True),
    Column("input_text", Text, nullable=True),
    Column("input_stats", JSON, nullable=True),
    Column("predicted", String(256), nullable=True),
    Column("probabilities", JSON, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Index("ix_scoring_model_version_ts", "model", "version", "ts"),
    Index("ix_scoring_request", "request_id"),
)


class ScoringError(CDLError):
    """The scoring store cannot be opened, read or written."""


@dataclass
class ScoringRecord:
    """One scored item; ``status`` is ``ok`` or ``rejected`` (then ``error`` says why)."""

    request_id: str
    model: str
    version: str
    status: str = STATUS_OK
    item_index: int = 0
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None
    input_kind: str | None = None
    input_hash: str | None = None
    input_text: str | None = None
    input_stats: dict[str, Any] | None = None
    predicted: str | None = None
    probabilities: dict[str, float] | None = None
    latency_ms: float | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


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


class ScoringStore:
    """Reads and writes scoring records in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = normalize_url(url)
        try:
            self.engine: Engine = create_engine(self.url, pool_pre_ping=True)
        except Exception as exc:  # bad URL or missing driver
            raise ScoringError(f"cannot open scoring store {redact(self.url)}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        if create:
            self.create_schema()

    def create_schema(self) -> None:
        """Create the table if missing; a concurrent creator (another worker) is tolerated."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                return
            except (IntegrityError, ProgrammingError, OperationalError) as exc:
                if attempt == 2:
                    raise ScoringError(
                        f"cannot create scoring table in {redact(self.url)}: {exc}"
                    ) from exc
                time.sleep(0.2 * (attempt + 1))

    def write(self, records: Sequence[ScoringRecord]) -> int:
        """Insert ``records`` in one transaction; returns how many were written."""
        if not records:
            return 0
        with self.engine.begin() as conn:
            conn.execute(insert(scoring_records), [record.row() for record in records])
        return len(records)

    def read(
        self,
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[ScoringRecord]:
        """Records, oldest first, filtered by model, version, time and status."""
        query = select(scoring_records).order_by(scoring_records.c.ts, scoring_records.c.id)
        for column, value in (("model", model), ("version", version), ("status", status)):
            if value is not None:
                query = query.where(scoring_records.c[column] == value)
        if since is not None:
            query = query.where(scoring_records.c.ts >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record(row) for row in rows]

    def count(self, model: str | None = None, status: str | None = None) -> int:
        query = select(func.count()).select_from(scoring_records)
        if model is not None:
            query = query.where(scoring_records.c.model == model)
        if status is not None:
            query = query.where(scoring_records.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def dispose(self) -> None:
        self.engine.dispose()


def _record(row: Any) -> ScoringRecord:
    values = {key: row[key] for key in row if key != "id"}
    ts = values["ts"]
    if ts is not None and ts.tzinfo is None:  # SQLite returns naive datetimes
        values["ts"] = ts.replace(tzinfo=UTC)
    for key in ("input_stats", "probabilities"):
        if isinstance(values[key], str):
            values[key] = json.loads(values[key])
    return ScoringRecord(**values)
