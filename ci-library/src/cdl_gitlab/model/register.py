"""Register a trained checkpoint in the model registry with its metrics and lineage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cdl_gitlab.config import Settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.model.expconf import data_ref
from cdl_gitlab.registry.base import ModelRegistry, ModelVersion

logger = logging.getLogger(__name__)


def data_version(settings: Settings, split: str, ref: str | None) -> dict[str, str]:
    """``{repo, branch, commit}`` of the validated ``split`` at ``ref`` (default: data branch)."""
    from cdl_gitlab.data.commits import DataVersion
    from cdl_gitlab.data.labeling import validated_commit
    from cdl_gitlab.data.stores import open_store

    version = DataVersion.of(validated_commit(settings, open_store(settings), split, ref))
    return {"repo": version.repo, "branch": version.branch, "commit": version.commit}


def _experiment_registry(settings: Settings, experiment_id: int) -> str:
    """Where the experiment is recorded: the master's web UI, the MLflow experiment, or the
    local SQLite registry."""
    if settings.registry_backend == "mlflow":
        from cdl_gitlab.mlflow_support import tracking_uri
        from cdl_gitlab.registry.mlflow_backend import training_experiment

        experiment = training_experiment(settings.config.model.name)
        return f"{tracking_uri()} (experiment {experiment}, local id {experiment_id})"
    if settings.profile == "cluster":
        return f"{settings.determined_master.rstrip('/')}/det/experiments/{experiment_id}"
    from cdl_gitlab.tracking import open_experiment_registry

    return str(open_experiment_registry(settings).path)


def register_checkpoint(
    settings: Settings,
    *,
    checkpoint_uuid: str,
    checkpoint_path: Path,
    steps_completed: int,
    exp_conf: dict[str, Any],
    hparams: dict[str, Any],
    experiment_id: int,
    trial_id: int | None,
    validation: dict[str, float],
    train_data: dict[str, str],
    wall_seconds: float,
    slots: int,
    tensorboard: Path | None,
    search_wall_seconds: float | None = None,
    registry: ModelRegistry | None = None,
) -> ModelVersion:
    """Register the checkpoint as the next version of the project's model (in ``registry``,
    default: the profile's)."""
    from cdl_gitlab import lineage
    from cdl_gitlab.registry import Checkpoint, open_registry

    name = settings.config.model.name
    test_data = data_version(settings, "test", data_ref(exp_conf.get("data"), "test"))
    cost: dict[str, Any] = {
        "wall_seconds": round(wall_seconds, 3),
        "device_hours": round(wall_seconds / 3600.0 * slots, 6),
    }
    if search_wall_seconds is not None:
        cost["search_wall_seconds"] = round(search_wall_seconds, 3)
    record = lineage.build_lineage(
        code=lineage.code_version(settings.root),
        data={"train": train_data, "test": test_data},
        experiment={
            "id": experiment_id,
            "config": exp_conf,
            "hparams": hparams,
            "trial_id": trial_id,
        },
        checkpoint={"uuid": checkpoint_uuid, "steps_completed": int(steps_completed)},
        metrics={"validation": validation},
        hardware=lineage.hardware(),
        environment=lineage.environment(),
        cost=cost,
        logs={
            "tensorboard": str(tensorboard) if tensorboard else None,
            "experiment_registry": _experiment_registry(settings, experiment_id),
        },
    )
    registry = registry or open_registry(settings)
    registry.create_model(
        name,
        description=f"{settings.config.project.name}: {settings.config.model.task} classifier",
        labels=(settings.config.model.framework, settings.config.model.task),
    )
    for existing in registry.list_versions(name):
        if existing.checkpoint_uuid == checkpoint_uuid:
            raise CDLError(
                f"checkpoint {checkpoint_uuid} is already registered as {name} v{existing.version}"
            )
    metadata = {
        "framework": settings.config.model.framework,
        "task": settings.config.model.task,
        "experiment_id": experiment_id,
        "trial_id": trial_id,
        "hparams": hparams,
        "metrics": {"validation": validation},
        "lineage": record,
    }
    version = registry.register_version(
        name, Checkpoint(checkpoint_uuid, Path(checkpoint_path)), metadata
    )
    logger.info("registered %s v%d (checkpoint %s)", name, version.version, checkpoint_uuid)
    return version


def register_local_experiment(settings: Settings, experiment_id: int) -> ModelVersion:
    """Register the best trial of a local experiment (``train --no-register``, a search run
    without ``--register``): its last checkpoint, by the config's ``searcher.metric``."""
    from cdl_gitlab.model.checkpoint import read_spec
    from cdl_gitlab.model.runner import run_paths
    from cdl_gitlab.tracking import open_experiment_registry

    experiments = open_experiment_registry(settings)
    experiment = experiments.get_experiment(experiment_id)  # TrackingError names a wrong id
    searcher = experiment.config.get("searcher") or {}
    metric = str(searcher.get("metric") or "validation_loss")
    trial = experiments.best_trial(
        experiment_id, metric, bool(searcher.get("smaller_is_better", True))
    )
    checkpoint = trial.latest_checkpoint if trial is not None else None
    if trial is None or checkpoint is None:
        raise CDLError(
            f"experiment {experiment_id} has no trial with a validation {metric} and a "
            "checkpoint: nothing to register"
        )
    ended = trial.ended or trial.started
    single = len(experiment.trials) == 1
    return register_checkpoint(
        settings,
        checkpoint_uuid=checkpoint.uuid,
        checkpoint_path=checkpoint.path,
        steps_completed=checkpoint.steps_completed,
        exp_conf=experiment.config,
        hparams=trial.hparams,
        experiment_id=experiment_id,
        trial_id=trial.id,
        validation=dict(trial.metrics["validation"][-1].metrics),
        train_data=read_spec(checkpoint.path).data,
        wall_seconds=(ended - trial.started).total_seconds(),
        slots=1,
        tensorboard=run_paths(settings, experiment_id, None if single else trial.id).tensorboard,
    )
