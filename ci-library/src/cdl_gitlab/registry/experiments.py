"""The local experiment registry: experiments, trials, metrics and checkpoints in SQLite.

The local profile's stand-in for Determined's experiment tracking; local training and the
Optuna search record every trial here (``<state_dir>/experiments.sqlite``).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cdl_gitlab.registry.base import RegistryError

MetricGroup = Literal["training", "validation", "test"]
TrialState = Literal["ACTIVE", "COMPLETED", "ERROR", "PRUNED", "CANCELED"]
GROUPS = ("training", "validation", "test")
END_STATES = ("COMPLETED", "ERROR", "PRUNED", "CANCELED")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS experiments (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, config TEXT NOT NULL,
        labels TEXT NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT)""",
    """CREATE TABLE IF NOT EXISTS trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        hparams TEXT NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT)""",
    """CREATE TABLE IF NOT EXISTS metrics (
        trial_id INTEGER NOT NULL REFERENCES trials(id), grp TEXT NOT NULL,
        steps_completed INTEGER NOT NULL, metrics TEXT NOT NULL, reported TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        trial_id INTEGER NOT NULL REFERENCES trials(id), uuid TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL, steps_completed INTEGER NOT NULL, metadata TEXT NOT NULL,
        reported TEXT NOT NULL)""",
)


@dataclass(frozen=True)
class MetricsReport:
    steps_completed: int
    metrics: dict[str, float]
    reported: datetime


@dataclass(frozen=True)
class CheckpointRecord:
    uuid: str
    path: Path
    steps_completed: int
    metadata: dict[str, Any]
    reported: datetime


@dataclass(frozen=True)
class Trial:
    id: int
    experiment_id: int
    hparams: dict[str, Any]
    state: str
    started: datetime
    ended: datetime | None
    metrics: dict[str, list[MetricsReport]] = field(default_factory=dict)
    """Reports per group (``training``, ``validation``, ``test``), by steps completed."""
    checkpoints: list[CheckpointRecord] = field(default_factory=list)

    def best_value(self, metric: str, smaller_is_better: bool) -> float | None:
        """The best validation value of ``metric`` this trial reported, if any."""
        values = [
            report.metrics[metric]
            for report in self.metrics.get("validation", [])
            if isinstance(report.metrics.get(metric), int | float)
            and not math.isnan(report.metrics[metric])
        ]
        if not values:
            return None
        return min(values) if smaller_is_better else max(values)

    @property
    def latest_checkpoint(self) -> CheckpointRecord | None:
        return self.checkpoints[-1] if self.checkpoints else None


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    config: dict[str, Any]
    labels: dict[str, str]
    state: str
    started: datetime
    ended: datetime | None
    trials: list[Trial] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ExperimentRegistry:
    """Experiments, their trials, metrics series and checkpoints (SQLite, multi-process safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @staticmethod
    def _json(value: Any, what: str) -> str:
        try:
            return json.dumps(value, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{what} must be JSON-serialisable (no NaN): {exc}") from exc

    @staticmethod
    def _require(conn: sqlite3.Connection, table: str, row_id: int) -> str:
        row = conn.execute(f"SELECT state FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no {table[:-1]} with id {row_id} in the experiment registry")
        return str(row[0])

    def create_experiment(
        self, name: str, config: dict[str, Any], labels: Mapping[str, str] | None = None
    ) -> int:
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO experiments (name, config, labels, state, started) VALUES (?,?,?,?,?)",
                (
                    name,
                    self._json(config, "experiment config"),
                    self._json(dict(labels or {}), "labels"),
                    "ACTIVE",
                    _now(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def create_trial(self, experiment_id: int, hparams: dict[str, Any]) -> int:
        with self._transaction() as conn:
            self._require(conn, "experiments", experiment_id)
            cursor = conn.execute(
                "INSERT INTO trials (experiment_id, hparams, state, started) VALUES (?,?,?,?)",
                (experiment_id, self._json(hparams, "hparams"), "ACTIVE", _now()),
            )
            return int(cursor.lastrowid or 0)

    def report_metrics(
        self,
        trial_id: int,
        group: MetricGroup,
        steps_completed: int,
        metrics: Mapping[str, float],
    ) -> None:
        if group not in GROUPS:
            raise RegistryError(f"unknown metric group {group!r} (use one of {', '.join(GROUPS)})")
        values = {str(key): float(value) for key, value in metrics.items()}
        with self._transaction() as conn:
            self._require(conn, "trials", trial_id)
            conn.execute(
                "INSERT INTO metrics (trial_id, grp, steps_completed, metrics, reported) "
                "VALUES (?,?,?,?,?)",
                (trial_id, group, int(steps_completed), json.dumps(values), _now()),
            )

    def add_checkpoint(
        self,
        trial_id: int,
        uuid: str,
        path: Path,
        steps_completed: int,
        metadata: Mapping[str, Any],
    ) -> None:
        with self._transaction() as conn:
            self._require(conn, "trials", trial_id)
            conn.execute(
                "INSERT INTO checkpoints (trial_id, uuid, path, steps_completed, metadata, "
                "reported) VALUES (?,?,?,?,?,?)",
                (
                    trial_id,
                    uuid,
                    str(Path(path).resolve()),
                    int(steps_completed),
                    self._json(dict(metadata), "checkpoint metadata"),
                    _now(),
                ),
            )

    def _end(self, table: str, row_id: int, state: str) -> None:
        if state not in END_STATES:
            raise RegistryError(f"unknown end state {state!r} (use one of {', '.join(END_STATES)})")
        with self._transaction() as conn:
            self._require(conn, table, row_id)
            conn.execute(
                f"UPDATE {table} SET state = ?, ended = ? WHERE id = ?", (state, _now(), row_id)
            )

    def end_trial(self, trial_id: int, state: TrialState) -> None:
        self._end("trials", trial_id, state)

    def end_experiment(self, experiment_id: int, state: TrialState) -> None:
        self._end("experiments", experiment_id, state)

    def get_experiment(self, experiment_id: int) -> Experiment:
        with self._transaction() as conn:
            self._require(conn, "experiments", experiment_id)
            return self._load(conn, experiment_id)

    def list_experiments(self) -> list[Experiment]:
        with self._transaction() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM experiments ORDER BY id")]
            return [self._load(conn, experiment_id) for experiment_id in ids]

    def best_trial(self, experiment_id: int, metric: str, smaller_is_better: bool) -> Trial | None:
        """The trial with the best validation ``metric`` (ties: the earliest trial)."""
        scored = [
            (value, trial.id, trial)
            for trial in self.get_experiment(experiment_id).trials
            if (value := trial.best_value(metric, smaller_is_better)) is not None
        ]
        if not scored:
            return None
        sign = 1.0 if smaller_is_better else -1.0
        return min(scored, key=lambda item: (sign * item[0], item[1]))[2]

    def _load(self, conn: sqlite3.Connection, experiment_id: int) -> Experiment:
        name, config, labels, state, started, ended = conn.execute(
            "SELECT name, config, labels, state, started, ended FROM experiments WHERE id = ?",
            (experiment_id,),
        ).fetchone()
        trials = []
        for trial_id, hparams, t_state, t_started, t_ended in conn.execute(
            "SELECT id, hparams, state, started, ended FROM trials WHERE experiment_id = ? "
            "ORDER BY id",
            (experiment_id,),
        ).fetchall():
            series: dict[str, list[MetricsReport]] = {}
            for grp, steps, values, reported in conn.execute(
                "SELECT grp, steps_completed, metrics, reported FROM metrics WHERE trial_id = ? "
                "ORDER BY steps_completed, rowid",
                (trial_id,),
            ):
                series.setdefault(grp, []).append(
                    MetricsReport(int(steps), json.loads(values), datetime.fromisoformat(reported))
                )
            checkpoints = [
                CheckpointRecord(
                    uuid, Path(path), int(steps), json.loads(meta), datetime.fromisoformat(rep)
                )
                for uuid, path, steps, meta, rep in conn.execute(
                    "SELECT uuid, path, steps_completed, metadata, reported FROM checkpoints "
                    "WHERE trial_id = ? ORDER BY steps_completed, rowid",
                    (trial_id,),
                )
            ]
            trials.append(
                Trial(
                    id=int(trial_id),
                    experiment_id=experiment_id,
                    hparams=json.loads(hparams),
                    state=t_state,
                    started=datetime.fromisoformat(t_started),
                    ended=_time(t_ended),
                    metrics=series,
                    checkpoints=checkpoints,
                )
            )
        return Experiment(
            id=experiment_id,
            name=name,
            config=json.loads(config),
            labels=json.loads(labels),
            state=state,
            started=datetime.fromisoformat(started),
            ended=_time(ended),
            trials=trials,
        )


def open_experiment_registry(settings: Any) -> ExperimentRegistry:
    """The local experiment registry of the project (``<state_dir>/experiments.sqlite``)."""
    return ExperimentRegistry(settings.state_dir / "experiments.sqlite")
