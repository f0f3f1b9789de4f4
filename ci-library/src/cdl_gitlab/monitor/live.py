"""Streaming read of Scoring Data into bounded summaries (counts, bins, uniform samples).

Volume per hour and status is aggregated in SQL. The ``ok`` rows are then fetched in chunks
(``yield_per``) as scalars only: the JSON fields (input statistics, the largest class
probability, the top stems) are extracted by the database (SQLite JSON1 or PostgreSQL JSON
functions), so Python never parses JSON per row. Each continuous value goes into exact bin
counts over the reference's cut points and into a bottom-k uniform sample
(:class:`Reservoir`), so memory stays bounded however many rows the window holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Float, Integer, Text, cast, func, literal_column, select

from cdl_gitlab.monitor.errors import MonitorError
from cdl_gitlab.monitor.reference import FEATURES
from cdl_gitlab.monitor.stats import bin_counts
from cdl_gitlab.scoring import STATUS_OK, STATUS_REJECTED
from cdl_gitlab.scoring.tables import scoring_records

SAMPLE_CAP = 100_000
"""Largest uniform sample kept per live feature (KS tests, quantiles, plots)."""
CHUNK_ROWS = 20_000


class Reservoir:
    """A uniform random sample of at most ``cap`` values of a stream (bottom-k keys)."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap = cap
        self._rng = rng
        self._values = np.empty(0, dtype=np.float64)
        self._keys = np.empty(0, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        keys = self._rng.random(values.size)
        self._values = np.concatenate([self._values, values])
        self._keys = np.concatenate([self._keys, keys])
        if self._values.size > self.cap:
            keep = np.argpartition(self._keys, self.cap - 1)[: self.cap]
            self._values, self._keys = self._values[keep], self._keys[keep]

    @property
    def values(self) -> np.ndarray:
        return self._values


class Accumulator:
    """Count, bin counts (over ``edges`` if given) and a uniform sample of one feature."""

    def __init__(
        self, edges: Sequence[float] | None, rng: np.random.Generator, cap: int = SAMPLE_CAP
    ) -> None:
        self.edges = list(edges) if edges is not None else None
        self.counts = (
            np.zeros(len(self.edges) + 1, dtype=np.int64) if self.edges is not None else None
        )
        self.sample = Reservoir(cap, rng)
        self.n = 0

    def add(self, values: Iterable[float]) -> None:
        array = np.fromiter(values, dtype=np.float64)
        array = array[np.isfinite(array)]
        self.n += int(array.size)
        if self.counts is not None and array.size:
            self.counts += bin_counts(array, self.edges or [])
        self.sample.add(array)


@dataclass
class LiveData:
    """Everything a report needs from one model version's scoring records in a window."""

    task: str
    feature_edges: Mapping[str, Sequence[float] | None] = field(default_factory=dict)
    confidence_edges: Sequence[float] | None = None
    seed: int = 0
    ok: int = 0
    rejected: int = 0
    first: datetime | None = None
    last: datetime | None = None
    hourly: Counter[tuple[int, str]] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    stems: Counter[str] = field(default_factory=Counter)
    stems_seen: int = 0
    missing: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.features = {
            name: Accumulator(self.feature_edges.get(name), rng) for name in FEATURES[self.task]
        }
        self.confidence = Accumulator(self.confidence_edges, rng)
        self.latency = Accumulator(None, rng)

    @property
    def total(self) -> int:
        return self.ok + self.rejected

    @property
    def error_rate(self) -> float:
        return self.rejected / self.total if self.total else 0.0

    def add_volume(self, rows: Iterable[Any]) -> None:
        """Fold ``(hour epoch, status, count, first ts, last ts)`` rows (see :func:`read_live`)."""
        for hour, status, count, first, last in rows:
            self.hourly[(int(hour), status)] += int(count)
            if status == STATUS_OK:
                self.ok += int(count)
            elif status == STATUS_REJECTED:
                self.rejected += int(count)
            for value in (first, last):
                if value is None:
                    continue
                value = as_utc(value) if isinstance(value, datetime) else value
                self.first = value if self.first is None or value < self.first else self.first
                self.last = value if self.last is None or value > self.last else self.last

    def add_rows(self, rows: Sequence[Any]) -> None:
        """Fold one chunk of ``ok`` rows of :func:`live_columns` (columnar, C-level loops)."""
        if not rows:
            return
        predicted, confidence, latency, stems, *features = zip(*rows, strict=True)
        self.predicted.update(p for p in predicted if p is not None)
        self.latency.add(_floats(latency))
        values = _floats(confidence)
        found = values[np.isfinite(values)]
        self.missing["probabilities"] += int(values.size - found.size)
        self.confidence.add(found)
        for name, column in zip(self.features, features, strict=True):
            values = _floats(column)
            found = values[np.isfinite(values)]
            self.missing[name] += int(values.size - found.size)
            self.features[name].add(found)
        if self.task == "text":
            texts = [t for t in stems if t is not None]
            self.missing["top_stems"] += len(rows) - len(texts)
            self.stems_seen += len(texts)
            self.stems.update(" ".join(texts).split())


def _floats(column: Sequence[Any]) -> np.ndarray:
    return np.fromiter(
        (np.nan if v is None else v for v in column), dtype=np.float64, count=len(column)
    )


_SQL = {
    "sqlite": {
        "confidence": "(SELECT max(value) FROM json_each({t}.probabilities))",
        "stems": "(CASE WHEN json_type({t}.input_stats, '$.top_stems') = 'object' THEN "
        "coalesce((SELECT group_concat(key, ' ') FROM json_each({t}.input_stats, "
        "'$.top_stems')), '') END)",
    },
    "postgresql": {
        "confidence": "(CASE WHEN json_typeof({t}.probabilities) = 'object' THEN (SELECT "
        "max(value::float) FROM json_each_text({t}.probabilities)) END)",
        "stems": "(CASE WHEN json_typeof({t}.input_stats -> 'top_stems') = 'object' THEN "
        "coalesce((SELECT string_agg(key, ' ') FROM json_each_text({t}.input_stats "
        "-> 'top_stems')), '') END)",
    },
}
"""Per dialect: the largest class probability and the space-joined top stems of a record."""


def _dialect_sql(dialect: str, name: str) -> str:
    if dialect not in _SQL:
        raise MonitorError(f"scoring stores on {dialect} are not supported (SQLite or PostgreSQL)")
    return _SQL[dialect][name].format(t=scoring_records.name)


def live_columns(task: str, dialect: str) -> list[Any]:
    """The columns :meth:`LiveData.add_rows` folds; JSON fields are extracted in SQL."""
    c = scoring_records.c
    features = [
        func.coalesce(*(c.input_stats[key].as_float() for key in aliases))
        if len(aliases) > 1
        else c.input_stats[aliases[0]].as_float()
        for aliases in FEATURES[task].values()
    ]
    stems = (
        literal_column(_dialect_sql(dialect, "stems"), Text)
        if task == "text"
        else literal_column("NULL", Text)
    )
    return [
        c.predicted,
        literal_column(_dialect_sql(dialect, "confidence"), Float),
        c.latency_ms,
        stems,
        *features,
    ]


def hour_bucket(dialect: str) -> Any:
    """SQL for the epoch seconds of the start of a record's UTC hour."""
    ts = scoring_records.c.ts
    if dialect == "sqlite":  # stored as naive UTC text
        seconds = cast(func.strftime("%s", ts), Integer)
        return seconds - seconds % 3600
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", ts) / 3600) * 3600, BigInteger)
    raise MonitorError(f"scoring stores on {dialect} are not supported (SQLite or PostgreSQL)")


def read_live(
    engine: Any,
    live: LiveData,
    *,
    model: str,
    version: str,
    since: datetime,
    until: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LiveData:
    """Stream the version's scoring records with ``since <= ts < until`` into ``live``:
    volume per hour and status aggregated in SQL, then the ``ok`` rows in chunks."""
    c = scoring_records.c
    where = [c.model == model, c.version == str(version), c.ts >= as_utc(since)]
    if until is not None:
        where.append(c.ts < as_utc(until))
    hour = hour_bucket(engine.dialect.name).label("hour")
    volume = (
        select(hour, c.status, func.count(), func.min(c.ts), func.max(c.ts))
        .where(*where)
        .group_by(hour, c.status)
    )
    columns = live_columns(live.task, engine.dialect.name)
    rows = select(*columns).where(*where, c.status == STATUS_OK)
    with engine.connect() as conn:
        live.add_volume(conn.execute(volume))
        result = conn.execution_options(yield_per=chunk_rows).execute(rows)
        for chunk in result.partitions(chunk_rows):
            live.add_rows(chunk)
    return live


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (naive values are taken as UTC), as the scoring store writes them."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
