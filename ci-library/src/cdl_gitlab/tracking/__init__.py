"""Experiment tracking: experiments, trials, metrics series and checkpoints.

The local profile records every training run and search trial in
``<state_dir>/experiments.sqlite`` (:mod:`cdl_gitlab.tracking.local`); the cluster profile
leaves tracking to the Determined master. With ``registry.backend: mlflow`` every trial is
mirrored to the MLflow server (:mod:`cdl_gitlab.tracking.mlflow_tracker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.tracking.local import (
    END_STATES,
    GROUPS,
    CheckpointRecord,
    Experiment,
    ExperimentRegistry,
    MetricsReport,
    TrackingError,
    Trial,
)

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings


__all__ = [
    "END_STATES",
    "GROUPS",
    "CheckpointRecord",
    "Experiment",
    "ExperimentRegistry",
    "MetricsReport",
    "TrackingError",
    "Trial",
    "open_experiment_registry",
]


def open_experiment_registry(settings: Settings) -> ExperimentRegistry:
    """The project's experiment registry (``<state_dir>/experiments.sqlite``), mirrored to
    the MLflow server with ``registry.backend: mlflow``."""
    path = settings.state_dir / "experiments.sqlite"
    if settings.registry_backend == "mlflow":
        from cdl_gitlab.tracking.mlflow_tracker import MlflowExperimentRegistry

        return MlflowExperimentRegistry(path, settings.config.model.name)
    return ExperimentRegistry(path)
