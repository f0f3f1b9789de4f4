"""The local experiment tracker: experiments, trials, metrics and checkpoints in SQLite.

The local profile's stand-in for Determined's experiment tracking; local training and the
Optuna search record every trial here (``<state_dir>/experiments.sqlite``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from cdl_gitlab.db import create_engine, ensure_schema, sqlite_url, write_transaction
from cdl_gitlab.errors import CDLError
from cdl_gitlab.tracking.tables import SCHEMA, checkpoints, experiments, rowid, trials
from cdl_gitlab.tracking.tables import metrics as _metrics

if TYPE_CHECKING:
    pass

MetricGroup = Literal["training", "validation", "test"]
TrialState = Literal["ACTIVE", "COMPLETED", "ERROR", "PRUNED", "CANCELED"]
GROUPS = ("training", "validation", "test")
END_STATES = ("COMPLETED", "ERROR", "PRUNED", "CANCELED")


class TrackingError(CDLError):
    """An experiment-tracking operation failed: unknown id, bad state or group, bad JSON."""


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
        self.engine = create_engine(sqlite_url(self.path))
        ensure_schema(self.engine, SCHEMA)

    @staticmethod
    def _json(value: Any, what: str) -> str:
        try:
            return json.dumps(value, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TrackingError(f"{what} must be JSON-serialisable (no NaN): {exc}") from exc

    @staticmethod
    def _require(conn: sa.Connection, table: sa.Table, row_id: int) -> None:
        if conn.execute(sa.select(table.c.id).where(table.c.id == row_id)).first() is None:
            what = str(table.name)[:-1]
            raise TrackingError(f"no {what} with id {row_id} in the experiment registry")

    def create_experiment(
        self, name: str, config: dict[str, Any], labels: Mapping[str, str] | None = None
    ) -> int:
        values = {
            "name": name,
            "config": self._json(config, "experiment config"),
            "labels": self._json(dict(labels or {}), "labels"),
            "state": "ACTIVE",
            "started": _now(),
        }
        with write_transaction(self.engine) as conn:
            result = conn.execute(sa.insert(experiments).values(values))
            return int(result.inserted_primary_key[0])

    def create_trial(self, experiment_id: int, hparams: dict[str, Any]) -> int:
        values = {
            "experiment_id": experiment_id,
            "hparams": self._json(hparams, "hparams"),
            "state": "ACTIVE",
            "started": _now(),
        }
        with write_transaction(self.engine) as conn:
            self._require(conn, experiments, experiment_id)
            return int(conn.execute(sa.insert(trials).values(values)).inserted_primary_key[0])

    def report_metrics(
        self,
        trial_id: int,
        group: MetricGroup,
        steps_completed: int,
        metrics: Mapping[str, float],
    ) -> None:
        if group not in GROUPS:
            raise TrackingError(f"unknown metric group {group!r} (use one of {', '.join(GROUPS)})")
        values = {str(key): float(value) for key, value in metrics.items()}
        row = {
            "trial_id": trial_id,
            "grp": group,
            "steps_completed": int(steps_completed),
            "metrics": json.dumps(values),
            "reported": _now(),
        }
        with write_transaction(self.engine) as conn:
            self._require(conn, trials, trial_id)
            conn.execute(sa.insert(_metrics).values(row))

    def add_checkpoint(
        self,
        trial_id: int,
        uuid: str,
        path: Path,
        steps_completed: int,
        metadata: Mapping[str, Any],
    ) -> None:
        row = {
            "trial_id": trial_id,
            "uuid": uuid,
            "path": str(Path(path).resolve()),
            "steps_completed": int(steps_completed),
            "metadata": self._json(dict(metadata), "checkpoint metadata"),
            "reported": _now(),
        }
        with write_transaction(self.engine) as conn:
            self._require(conn, trials, trial_id)
            conn.execute(sa.insert(checkpoints).values(row))

    def _end(self, table: sa.Table, row_id: int, state: str) -> None:
        if state not in END_STATES:
            raise TrackingError(f"unknown end state {state!r} (use one of {', '.join(END_STATES)})")
        with write_transaction(self.engine) as conn:
            self._require(conn, table, row_id)
            conn.execute(
                sa.update(table).where(table.c.id == row_id).values(state=state, ended=_now())
            )

    def end_trial(self, trial_id: int, state: TrialState) -> None:
        self._end(trials, trial_id, state)

    def end_experiment(self, experiment_id: int, state: TrialState) -> None:
        self._end(experiments, experiment_id, state)

    def get_experiment(self, experiment_id: int) -> Experiment:
        with self.engine.connect() as conn:
            self._require(conn, experiments, experiment_id)
            return self._load(conn, experiment_id)

    def list_experiments(self) -> list[Experiment]:
        with self.engine.connect() as conn:
            ids = conn.scalars(sa.select(experiments.c.id).order_by(experiments.c.id)).all()
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

    def _load(self, conn: sa.Connection, experiment_id: int) -> Experiment:
        e = experiments.c
        name, config, labels, state, started, ended = conn.execute(
            sa.select(e.name, e.config, e.labels, e.state, e.started, e.ended).where(
                e.id == experiment_id
            )
        ).one()
        t, m, c = trials.c, _metrics.c, checkpoints.c
        loaded = []
        for trial_id, hparams, t_state, t_started, t_ended in conn.execute(
            sa.select(t.id, t.hparams, t.state, t.started, t.ended)
            .where(t.experiment_id == experiment_id)
            .order_by(t.id)
        ).all():
            series: dict[str, list[MetricsReport]] = {}
            for grp, steps, values, reported in conn.execute(
                sa.select(m.grp, m.steps_completed, m.metrics, m.reported)
                .where(m.trial_id == trial_id)
                .order_by(m.steps_completed, rowid)
            ):
                series.setdefault(grp, []).append(
                    MetricsReport(int(steps), json.loads(values), datetime.fromisoformat(reported))
                )
            records = [
                CheckpointRecord(
                    uuid, Path(path), int(steps), json.loads(meta), datetime.fromisoformat(rep)
                )
                for uuid, path, steps, meta, rep in conn.execute(
                    sa.select(c.uuid, c.path, c.steps_completed, c.metadata, c.reported)
                    .where(c.trial_id == trial_id)
                    .order_by(c.steps_completed, rowid)
                )
            ]
            loaded.append(
                Trial(
                    id=int(trial_id),
                    experiment_id=experiment_id,
                    hparams=json.loads(hparams),
                    state=t_state,
                    started=datetime.fromisoformat(t_started),
                    ended=_time(t_ended),
                    metrics=series,
                    checkpoints=records,
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
            trials=loaded,
        )
