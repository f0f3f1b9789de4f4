"""``cdl model search``: the adaptive ASHA search of ``model/adaptive.yaml`` with Optuna.

The Determined search space maps to Optuna distributions (``const``, ``int``, ``double``,
``log`` with its ``base``, ``categorical``, nested mappings), and ``adaptive_asha`` to a
``SuccessiveHalvingPruner``: ``divisor`` is the reduction factor, the first rung is at
``max_time / divisor ** (max_rungs - 1)`` (``time_metric`` units), and ``mode`` sets how many
rungs are skipped before stopping starts (aggressive 0, standard 1, conservative 2). Each trial
runs through the real Determined harness and reports its validation metrics as intermediate
values; a pruned trial is stopped the way the master stops it on a cluster (preemption).
Every trial is recorded in the experiment registry (pruned ones as PRUNED); the best
configuration is written as a ready-to-train ``const.best.yaml``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cdl_gitlab.config import Settings
from cdl_gitlab.fsutil import atomic_write_text
from cdl_gitlab.model.expconf import (
    SEARCH_TYPES,
    ExperimentConfigError,
    TrainLength,
    load_experiment_config,
    searcher_length,
    searcher_metric,
    training_length,
)
from cdl_gitlab.model.recorder import TrialRecorder
from cdl_gitlab.model.runner import run_paths, run_trial
from cdl_gitlab.model.train import experiment_seed, require_training_data
from cdl_gitlab.registry.base import ModelVersion

if TYPE_CHECKING:
    from cdl_gitlab.model.cluster import ClusterRun

logger = logging.getLogger(__name__)

MODE_SKIPPED_RUNGS = {"aggressive": 0, "standard": 1, "conservative": 2}


def suggest(trial: Any, space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Sample one configuration of a Determined ``hyperparameters`` mapping."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        name = f"{prefix}{key}"
        if not isinstance(spec, dict):
            values[key] = spec
            continue
        kind = spec.get("type")
        if kind is None:
            values[key] = suggest(trial, spec, f"{name}.")
        elif kind == "const":
            values[key] = spec["val"]
        elif kind == "int":
            values[key] = trial.suggest_int(name, int(spec["minval"]), int(spec["maxval"]))
        elif kind == "double":
            values[key] = trial.suggest_float(name, float(spec["minval"]), float(spec["maxval"]))
        elif kind == "log":
            base = float(spec.get("base", 10.0))
            exponent = trial.suggest_float(name, float(spec["minval"]), float(spec["maxval"]))
            values[key] = float(base**exponent)
        elif kind == "categorical":
            choices = list(spec["vals"])
            if not choices:
                raise ExperimentConfigError(f"hyperparameters.{name}: empty categorical vals")
            picked = trial.suggest_categorical(name, list(range(len(choices))))
            values[key] = choices[picked]
        else:
            raise ExperimentConfigError(
                f"hyperparameters.{name}: unknown type {kind!r} "
                f"(use const, {', '.join(SEARCH_TYPES)})"
            )
    return values


@dataclass(frozen=True)
class PrunerSettings:
    min_resource: int
    reduction_factor: int
    min_early_stopping_rate: int


def pruner_settings(searcher: dict[str, Any], length: TrainLength) -> PrunerSettings:
    """Successive-halving parameters equivalent to the ``adaptive_asha`` searcher."""
    divisor = int(searcher.get("divisor", 4))
    if divisor < 2:
        raise ExperimentConfigError("searcher.divisor: must be at least 2")
    max_rungs = max(1, int(searcher.get("max_rungs", 5)))
    mode = searcher.get("mode", "standard")
    if mode not in MODE_SKIPPED_RUNGS:
        raise ExperimentConfigError(
            f"searcher.mode: {mode!r} is not one of {', '.join(MODE_SKIPPED_RUNGS)}"
        )
    rungs = min(max_rungs, max(1, int(math.log(max(length.value, 1), divisor)) + 1))
    return PrunerSettings(
        min_resource=max(1, length.value // divisor ** (rungs - 1)),
        reduction_factor=divisor,
        min_early_stopping_rate=min(MODE_SKIPPED_RUNGS[mode], rungs - 1),
    )


def best_config(exp_conf: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """A single-trial experiment config with the given hyperparameters as constants."""
    metric, smaller_is_better = searcher_metric(exp_conf)
    config = {key: value for key, value in exp_conf.items() if key != "hyperparameters"}
    config["name"] = f"{exp_conf.get('name', 'experiment')}-best"
    config["hyperparameters"] = hparams
    config["searcher"] = {
        "name": "single",
        "metric": metric,
        "smaller_is_better": smaller_is_better,
    }
    return config


@dataclass
class SearchResult:
    experiment_id: int
    best_trial_id: int | None
    best_value: float | None
    best_hparams: dict[str, Any]
    trials: dict[str, int]
    best_config_path: Path | None
    wall_seconds: float
    version: ModelVersion | None = None


def search_local(
    settings: Settings,
    config_path: Path,
    *,
    max_trials: int | None = None,
    output: Path | None = None,
    register: bool = False,
) -> SearchResult:
    """Run the search off-cluster; write the best config; register it if asked."""
    import optuna

    from cdl_gitlab.tracking import open_experiment_registry

    exp_conf = load_experiment_config(config_path)
    searcher = exp_conf.get("searcher") or {}
    metric, smaller_is_better = searcher_metric(exp_conf)
    space = exp_conf.get("hyperparameters") or {}
    n_trials = int(max_trials or searcher.get("max_trials", 16))
    seed = experiment_seed(exp_conf, settings)
    length = searcher_length(exp_conf)
    pruning = searcher.get("name") == "adaptive_asha" and length is not None
    require_training_data(settings, exp_conf, register)
    experiments = open_experiment_registry(settings)
    experiment_id = experiments.create_experiment(
        str(exp_conf.get("name") or f"{settings.config.model.name}-search"),
        exp_conf,
        {"profile": "local", "config": config_path.name, "searcher": "optuna"},
    )
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if pruning:
        assert length is not None
        sha = pruner_settings(searcher, length)
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=sha.min_resource,
            reduction_factor=sha.reduction_factor,
            min_early_stopping_rate=sha.min_early_stopping_rate,
        )
        logger.info(
            "experiment %d: %d trials, successive halving from %d %s (divisor %d)",
            experiment_id,
            n_trials,
            sha.min_resource,
            length.unit,
            sha.reduction_factor,
        )
    study = optuna.create_study(
        direction="minimize" if smaller_is_better else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    trial_ids: dict[int, int] = {}
    recorders: dict[int, TrialRecorder] = {}
    started = time.monotonic()

    def objective(trial: optuna.Trial) -> float:
        hparams = suggest(trial, space)
        trial_length = length or training_length(hparams)
        if length is not None and hparams.get(length.unit) not in (None, length.value):
            logger.warning(
                "hyperparameters.%s=%s differs from searcher.max_time=%d: using max_time",
                length.unit,
                hparams.get(length.unit),
                length.value,
            )
        trial_id = experiments.create_trial(experiment_id, hparams)
        trial_ids[trial.number] = trial_id

        def stop_rule(steps: int, values: dict[str, float]) -> bool:
            if metric not in values:
                return False
            resource = int(values.get(length.unit, steps)) if length else steps
            trial.report(values[metric], step=resource)
            finished = length is not None and resource >= length.value
            return pruning and not finished and trial.should_prune()

        recorder = TrialRecorder(
            experiments, trial_id, label=f"trial {trial.number + 1}/{n_trials}", stop_rule=stop_rule
        )
        recorders[trial.number] = recorder
        state = "ERROR"
        try:
            run_trial(
                settings,
                exp_conf,
                hparams,
                trial_length,
                recorder,
                run_paths(settings, experiment_id, trial_id),
                seed + trial.number,
            )
            state = "PRUNED" if recorder.stopped else "COMPLETED"
        finally:
            experiments.end_trial(trial_id, state)
        if recorder.stopped:
            raise optuna.TrialPruned()
        value = recorder.last_validation.get(metric)
        if value is None:
            raise ExperimentConfigError(
                f"searcher.metric {metric!r} was not among the validation metrics "
                f"{sorted(recorder.last_validation)}"
            )
        return value

    state = "ERROR"
    try:
        study.optimize(objective, n_trials=n_trials, gc_after_trial=True)
        state = "COMPLETED"
    finally:
        experiments.end_experiment(experiment_id, state)
    wall = time.monotonic() - started
    counts: dict[str, int] = {}
    for frozen in study.trials:
        counts[frozen.state.name] = counts.get(frozen.state.name, 0) + 1
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return SearchResult(experiment_id, None, None, {}, counts, None, wall)
    best = study.best_trial
    best_hparams = suggest(optuna.trial.FixedTrial(best.params), space)
    if length is not None:
        best_hparams[length.unit] = length.value
    target = output or config_path.with_name("const.best.yaml")
    header = (
        f"# Best configuration of `cdl model search` experiment {experiment_id} "
        f"({metric} = {best.value:.6g}).\n# Train it: cdl model train -c {target.name}\n"
    )
    config_text = yaml.safe_dump(best_config(exp_conf, best_hparams), sort_keys=False)
    atomic_write_text(target, header + config_text)
    result = SearchResult(
        experiment_id,
        trial_ids[best.number],
        float(best.value),
        best_hparams,
        counts,
        target,
        wall,
    )
    logger.info(
        "experiment %d: best trial %d (%s = %.4f); wrote %s",
        experiment_id,
        result.best_trial_id,
        metric,
        best.value,
        target,
    )
    if register:
        result.version = _register_best(
            settings, exp_conf, best_hparams, experiment_id, result, recorders[best.number]
        )
    return result


def _register_best(
    settings: Settings,
    exp_conf: dict[str, Any],
    hparams: dict[str, Any],
    experiment_id: int,
    result: SearchResult,
    recorder: TrialRecorder,
) -> ModelVersion:
    from cdl_gitlab.model.checkpoint import read_spec
    from cdl_gitlab.model.register import register_checkpoint

    checkpoint = recorder.last_checkpoint
    if checkpoint is None:
        raise ExperimentConfigError(f"best trial {result.best_trial_id} wrote no checkpoint")
    return register_checkpoint(
        settings,
        checkpoint_uuid=checkpoint.uuid,
        checkpoint_path=checkpoint.path,
        steps_completed=checkpoint.steps_completed,
        exp_conf=exp_conf,
        hparams=hparams,
        experiment_id=experiment_id,
        trial_id=result.best_trial_id,
        validation=recorder.last_validation,
        train_data=read_spec(checkpoint.path).data,
        wall_seconds=time.monotonic() - recorder.started,
        slots=1,
        tensorboard=run_paths(settings, experiment_id, result.best_trial_id).tensorboard,
        search_wall_seconds=result.wall_seconds,
    )


def search_on_cluster(settings: Settings, config_path: Path, register: bool = False) -> ClusterRun:
    """Submit the search to the Determined master (its own ``adaptive_asha``) and wait; with
    ``register``, register the best checkpoint over all its trials."""
    from cdl_gitlab.model.cluster import run_on_cluster

    return run_on_cluster(settings, config_path, register=register)
