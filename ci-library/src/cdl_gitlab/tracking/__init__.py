"""Experiment tracking: experiments, trials, metrics series and checkpoints.

The local profile records every training run and search trial in
``<state_dir>/experiments.sqlite`` (:mod:`cdl_gitlab.tracking.local`); the cluster profile
leaves tracking to the Determined master.
"""

from cdl_gitlab.tracking.local import (
    END_STATES,
    GROUPS,
    CheckpointRecord,
    Experiment,
    ExperimentRegistry,
    MetricsReport,
    TrackingError,
    Trial,
    open_experiment_registry,
)

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
