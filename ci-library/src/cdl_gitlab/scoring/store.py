"""The Scoring Data store: one row per scored item (or per rejected request), SQLAlchemy 2.

The table is the contract with monitoring: it reads ``scoring_records`` by model, version and
time to build drift reports. Inputs are summarised, never stored whole: a SHA-256 of the item,
for text the first characters and simple counts, for images shape and pixel statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select

from cdl_gitlab.db import DatabaseError, create_engine, ensure_schema, normalize_url
from cdl_gitlab.errors import CDLError
from cdl_gitlab.scoring.tables import SCHEMA, scoring_records

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


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
        """The table row (a shallow copy: ``asdict`` would deep-copy every nested dict)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(ScoringRecord))


class ScoringStore:
    """Reads and writes scoring records in SQLite or PostgreSQL (migrated on first use)."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        try:
            self.engine: Engine = create_engine(self.url)
            ensure_schema(self.engine, SCHEMA)
        except DatabaseError as exc:
            raise ScoringError(f"scoring store: {exc}") from exc

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
