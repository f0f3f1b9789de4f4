"""``cdl model train``: one trial off-cluster (local profile) or an experiment on Determined.

Local runs go through the real Determined harness (:mod:`cdl_gitlab.model.runner`), are recorded in
the local experiment registry (one experiment, one trial, metrics series and checkpoints) and
end with the last checkpoint registered as a new model version with metrics and lineage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.config import Settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.model.expconf import (
    const_hparams,
    data_ref,
    load_experiment_config,
    slots_per_trial,
    training_length,
)
from cdl_gitlab.model.recorder import TrialRecorder
from cdl_gitlab.model.runner import check_storage_outside_code, run_paths, run_trial
from cdl_gitlab.registry.base import ModelVersion

if TYPE_CHECKING:
    from cdl_gitlab.model.cluster import ClusterRun

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a local training run produced."""

    experiment_id: int
    trial_id: int
    checkpoint_uuid: str
    checkpoint_path: Path
    validation: dict[str, float]
    wall_seconds: float
    first_report_seconds: float | None
    tensorboard: Path
    version: ModelVersion | None


def experiment_seed(exp_conf: dict[str, Any], settings: Settings) -> int:
    seed = (exp_conf.get("reproducibility") or {}).get("experiment_seed")
    return int(seed) if seed is not None else settings.config.data.split.seed


def resolve_config(settings: Settings, config: Path | str | None, default: str) -> Path:
    path = Path(config) if config else settings.path(default)
    if not path.is_absolute() and not path.exists():
        path = settings.path(str(path))
    if not path.is_file():
        raise CDLError(f"experiment config {path} not found")
    return path


def require_training_data(settings: Settings, exp_conf: dict[str, Any], register: bool) -> None:
    """Fail before an experiment starts when the validated train split (and, to register,
    the test split) of the config's data refs is missing or empty: one line naming what is
    missing and the command to run."""
    from cdl_gitlab.data.dataset import require_items
    from cdl_gitlab.data.stores import open_store

    store = open_store(settings)
    data = exp_conf.get("data")
    for split in ("train", "test") if register else ("train",):
        require_items(settings, split, data_ref(data, split), store)


def train_local(
    settings: Settings,
    config_path: Path,
    *,
    max_steps: int | None = None,
    register: bool = True,
) -> TrainResult:
    """Train one trial of ``config_path`` off-cluster and (by default) register it."""
    from cdl_gitlab.tracking import open_experiment_registry

    exp_conf = load_experiment_config(config_path)
    hparams = const_hparams(exp_conf)
    length = training_length(hparams, max_steps)
    check_storage_outside_code(settings.root, run_paths(settings, 0).checkpoints)
    require_training_data(settings, exp_conf, register)
    experiments = open_experiment_registry(settings)
    name = str(exp_conf.get("name") or settings.config.model.name)
    experiment_id = experiments.create_experiment(
        name, exp_conf, {"profile": "local", "config": config_path.name}
    )
    trial_id = experiments.create_trial(experiment_id, hparams)
    paths = run_paths(settings, experiment_id)
    recorder = TrialRecorder(experiments, trial_id, label=f"experiment {experiment_id}")
    logger.info(
        "experiment %d: training %s for %s (%s, %s)",
        experiment_id,
        settings.config.model.name,
        length,
        settings.config.model.framework,
        config_path.name,
    )
    if slots_per_trial(exp_conf) > 1:
        logger.warning(
            "resources.slots_per_trial=%d: off-cluster the trial runs in one process "
            "(distributed training needs the cluster profile)",
            slots_per_trial(exp_conf),
        )
    state = "ERROR"
    try:
        run_trial(
            settings,
            exp_conf,
            hparams,
            length,
            recorder,
            paths,
            experiment_seed(exp_conf, settings),
        )
        state = "COMPLETED"
    finally:
        experiments.end_trial(trial_id, state)
        experiments.end_experiment(experiment_id, state)
    wall = time.monotonic() - recorder.started
    checkpoint = recorder.last_checkpoint
    if checkpoint is None:
        raise CDLError(f"experiment {experiment_id}: the trial wrote no checkpoint")
    validation = recorder.last_validation
    version = None
    if register:
        from cdl_gitlab.model.checkpoint import read_spec
        from cdl_gitlab.model.register import register_checkpoint

        train_data = read_spec(checkpoint.path).data

        version = register_checkpoint(
            settings,
            checkpoint_uuid=checkpoint.uuid,
            checkpoint_path=checkpoint.path,
            steps_completed=checkpoint.steps_completed,
            exp_conf=exp_conf,
            hparams=hparams,
            experiment_id=experiment_id,
            trial_id=trial_id,
            validation=validation,
            train_data=train_data,
            wall_seconds=wall,
            slots=1,
            tensorboard=paths.tensorboard,
        )
    return TrainResult(
        experiment_id=experiment_id,
        trial_id=trial_id,
        checkpoint_uuid=checkpoint.uuid,
        checkpoint_path=checkpoint.path,
        validation=validation,
        wall_seconds=wall,
        first_report_seconds=recorder.first_report_seconds,
        tensorboard=paths.tensorboard,
        version=version,
    )


def train_on_cluster(
    settings: Settings, config_path: Path, max_steps: int | None = None, register: bool = True
) -> ClusterRun:
    """Submit ``config_path`` to the Determined master, wait, register the best checkpoint."""
    from cdl_gitlab.model.cluster import run_on_cluster

    exp_conf = load_experiment_config(config_path)
    overrides = None
    if max_steps is not None:
        hparams = dict(exp_conf.get("hyperparameters") or {})
        hparams.pop("epochs", None)
        hparams["batches"] = int(max_steps)
        overrides = {"hyperparameters": hparams}
    if slots_per_trial(exp_conf) > 1:
        logger.info("distributed training on %d slots", slots_per_trial(exp_conf))
    return run_on_cluster(settings, config_path, overrides=overrides, register=register)
