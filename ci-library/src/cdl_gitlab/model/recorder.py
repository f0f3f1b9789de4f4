"""A :class:`~cdl_gitlab.model.offcluster_context.RunListener` that records a trial in the
experiment registry."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

StopRule = Callable[[int, dict[str, float]], bool]
"""Called with each validation report; returning True stops the trial (pruning)."""


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite scalar metrics (Python, NumPy or 0-d tensor values) as floats."""
    values = {}
    for key, value in metrics.items():
        if isinstance(value, bool | str | bytes):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            values[str(key)] = number
    return values


@dataclass
class CheckpointInfo:
    uuid: str
    path: Path
    steps_completed: int
    metadata: dict[str, Any]


@dataclass
class TrialRecorder:
    """Records metrics and checkpoints of one trial; logs a line per validation."""

    experiments: Any
    trial_id: int
    label: str = ""
    stop_rule: StopRule | None = None
    started: float = field(default_factory=time.monotonic)
    first_report_seconds: float | None = None
    validations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    stopped: bool = False

    def on_metrics(self, group: str, steps_completed: int, metrics: dict[str, Any]) -> None:
        if group not in ("training", "validation"):
            return
        values = numeric_metrics(metrics)
        if self.first_report_seconds is None:
            self.first_report_seconds = time.monotonic() - self.started
        self.experiments.report_metrics(self.trial_id, group, steps_completed, values)
        if group != "validation":
            return
        self.validations.append((steps_completed, values))
        shown = ", ".join(
            f"{key}={value:.4f}"
            for key, value in sorted(values.items())
            if key not in ("batches", "epochs")
        )
        label = self.label or f"trial {self.trial_id}"
        logger.info("%s step %d: %s", label, steps_completed, shown)
        if self.stop_rule is not None and self.stop_rule(steps_completed, values):
            self.stopped = True

    def on_checkpoint(self, uuid: str, path: Path, metadata: dict[str, Any]) -> None:
        steps = int(metadata.get("steps_completed", 0))
        self.experiments.add_checkpoint(self.trial_id, uuid, path, steps, metadata)
        self.checkpoints.append(CheckpointInfo(uuid, Path(path), steps, dict(metadata)))
        logger.debug("checkpoint %s at step %d", uuid, steps)

    def should_stop(self) -> bool:
        return self.stopped

    @property
    def last_validation(self) -> dict[str, float]:
        return dict(self.validations[-1][1]) if self.validations else {}

    @property
    def last_checkpoint(self) -> CheckpointInfo | None:
        return self.checkpoints[-1] if self.checkpoints else None
