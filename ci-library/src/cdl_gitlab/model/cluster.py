"""Submit experiments to the Determined master of the cluster profile and follow them.

``submit_experiment`` lints the config, sets what the trial needs on the cluster (image pinned
by digest, endpoints and secrets, pull secret: ``cdl_gitlab.model.trial_environment``, in
memory), checks the context's size against the SDK's limit, creates or checks the trials'
Kubernetes Secrets (``cdl_gitlab.model.trial_secrets``), sends it with the context folder
through the determined SDK (``Determined.create_experiment``; ``.detignore`` is honoured by the
SDK), records the id in ``<state_dir>/cluster-experiments.json`` and, by default, polls until the
experiment ends, printing progress. ``register_best_checkpoint`` then registers the
experiment's best checkpoint (by its searcher metric) in the Determined model registry with
the same metadata and lineage a local run records.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from cdl_gitlab.errors import CDLError
from cdl_gitlab.fsutil import atomic_write_json, file_lock
from cdl_gitlab.model.config_lint import lint_config
from cdl_gitlab.model.context_size import check_context
from cdl_gitlab.model.trial_environment import apply_trial_environment, without_secrets
from cdl_gitlab.model.trial_secrets import ensure_trial_secrets, image_of, trial_secrets_needed
from cdl_gitlab.registry.base import ModelVersion, merge_metadata
from cdl_gitlab.registry.determined_backend import DeterminedRegistry, connect, master_errors

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

RECORD_FILE = "cluster-experiments.json"
# The experiment states after which nothing more happens (bindings.experimentv1State): the
# STOPPING_* states and the ACTIVE substates (QUEUED, PULLING, STARTING, RUNNING) still move.
TERMINAL = {"COMPLETED", "CANCELED", "ERROR", "DELETED", "DELETING", "DELETE_FAILED"}
ENDINGS = {
    "CANCELED": "was canceled (killed or stopped on the master)",
    "ERROR": "failed: a trial errored (an import, a missing variable, an exception)",
    "DELETED": "was deleted on the master",
    "DELETING": "is being deleted on the master",
    "DELETE_FAILED": "was deleted on the master, and the deletion failed",
}


class ClusterError(CDLError):
    """Submitting to or following an experiment on the Determined master failed."""


def load_experiment_config(config_path: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The YAML config at ``config_path`` with ``overrides`` deep-merged over it."""
    try:
        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"cannot read experiment config {config_path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ClusterError(f"{config_path}: expected a mapping at the top level")
    return merge_metadata(config, overrides or {}, overwrite=True)


def record_experiment(settings: Settings, experiment_id: int, **fields: Any) -> None:
    """Add or update the entry of ``experiment_id`` in ``cluster-experiments.json``."""
    path = settings.state_dir / RECORD_FILE
    with file_lock(path.with_name(path.name + ".lock")):
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        entries = data.setdefault("experiments", [])
        entry = next((e for e in entries if e.get("id") == experiment_id), None)
        if entry is None:
            entry = {"id": experiment_id}
            entries.append(entry)
        entry.update(fields)
        atomic_write_json(path, data)


def recorded_experiments(settings: Settings) -> list[dict[str, Any]]:
    """The experiments this project submitted, oldest first."""
    path = settings.state_dir / RECORD_FILE
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("experiments", []))


def _trial_summary(session: Any, experiment_id: int) -> str:
    from determined.common import api
    from determined.common.api import bindings

    def page(offset: int) -> bindings.v1GetExperimentTrialsResponse:
        return bindings.get_GetExperimentTrials(session, experimentId=experiment_id, offset=offset)

    trials = [t for resp in api.read_paginated(page) for t in resp.trials]
    counts: dict[str, int] = {}
    for trial in trials:
        state = trial.state.value.removeprefix("STATE_")
        counts[state] = counts.get(state, 0) + 1
    batches = sum(trial.totalBatchesProcessed for trial in trials)
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet"
    return f"trials: {states}; batches: {batches}"


def _failed_trial_logs(session: Any, experiment_id: int, lines: int = 20) -> str:
    """The last ``lines`` log lines of each errored trial (best effort: the reason a trial
    failed, such as an import error, belongs in the CI job's output)."""
    from determined.common import api
    from determined.common.api import bindings, errors, logs

    def page(offset: int) -> bindings.v1GetExperimentTrialsResponse:
        return bindings.get_GetExperimentTrials(session, experimentId=experiment_id, offset=offset)

    parts = []
    try:
        trials = [t for resp in api.read_paginated(page) for t in resp.trials]
        for trial in trials:
            if trial.state != bindings.trialv1State.ERROR:
                continue
            tail = [
                entry.message.rstrip("\n")
                for entry in logs.trial_logs(session, trial.id, tail=lines)
            ]
            if tail:
                parts.append(f"last lines of trial {trial.id}'s log:\n" + "\n".join(tail))
    except (
        errors.BadRequestException,
        errors.BadResponseException,
        bindings.APIHttpError,
        OSError,
        ValueError,
    ) as exc:
        return f"(its trial logs could not be read: {exc})"
    return "\n".join(parts)


def wait_for_experiment(
    experiment: Any,
    session: Any,
    *,
    poll_interval: float = 5.0,
    timeout: float | None = None,
    echo: Callable[[str], None] = click.echo,
) -> str:
    """Poll until ``experiment`` ends; print a line whenever its progress changes."""
    started = time.monotonic()
    last = ""
    while True:
        experiment.reload()
        state = experiment.state.value.removeprefix("STATE_")
        progress = f"{experiment.progress * 100:.0f}%" if experiment.progress is not None else "-"
        line = (
            f"experiment {experiment.id}: {state} {progress}; "
            f"{_trial_summary(session, experiment.id)}"
        )
        if line != last:
            echo(line)
            last = line
        if state in TERMINAL:
            return state
        if state == "PAUSED":
            raise ClusterError(f"experiment {experiment.id} is paused: activate it in the web UI")
        if timeout is not None and time.monotonic() - started > timeout:
            raise ClusterError(
                f"experiment {experiment.id} still {state} after {timeout:.0f} s; it keeps "
                "running on the cluster (follow it with det experiment describe)"
            )
        time.sleep(poll_interval)


def submit_experiment(
    settings: Settings,
    config_path: Path,
    context_dir: Path,
    *,
    wait: bool = True,
    overrides: dict[str, Any] | None = None,
    poll_interval: float = 5.0,
    timeout: float | None = None,
    lint: bool = True,
    echo: Callable[[str], None] = click.echo,
) -> int:
    """Create the experiment on ``settings.determined_master`` and return its id.

    Lint errors, an image not pinned by digest, a missing endpoint, an oversized context or a
    trial Secret that cannot be made stop the submission before anything is sent. With
    ``wait``, polls until the experiment ends and raises ClusterError unless it COMPLETED (the
    id is recorded either way).
    """
    config = apply_trial_environment(settings, load_experiment_config(config_path, overrides))
    if lint:
        errors = [
            i
            for i in lint_config(config, str(config_path), Path(context_dir))
            if i.severity == "error"
        ]
        if errors:
            raise ClusterError("the experiment config has errors:\n" + "\n".join(map(str, errors)))
    check_context(Path(context_dir))
    if trial_secrets_needed(settings):
        for line in ensure_trial_secrets(settings, image_of(config["environment"]["image"])):
            echo(line)
    master = settings.determined_master
    client = connect(master)
    with master_errors(master, f"submit {config_path}"):
        try:
            experiment = client.create_experiment(config, model_dir=str(context_dir))
        except ValueError as exc:  # the SDK's own context checks (size, duplicate paths)
            raise ClusterError(f"submit {config_path}: the model context: {exc}") from exc
    echo(f"submitted experiment {experiment.id} to {master}")
    record_experiment(
        settings,
        experiment.id,
        name=config.get("name"),
        config=str(config_path),
        master=master,
        submitted=datetime.now(UTC).isoformat(),
        state="ACTIVE",
        pipeline=os.environ.get("CI_PIPELINE_ID"),
    )
    if not wait:
        return int(experiment.id)
    with master_errors(master, f"follow experiment {experiment.id}"):
        state = wait_for_experiment(
            experiment,
            client._session,
            poll_interval=poll_interval,
            timeout=timeout,
            echo=echo,
        )
    record_experiment(settings, experiment.id, state=state)
    if state != "COMPLETED":
        message = (
            f"experiment {experiment.id} ended {state}: it {ENDINGS.get(state, 'did not complete')}"
            f" (see its logs on {master}: det experiment logs {experiment.id})"
        )
        if state == "ERROR":
            message += "\n" + _failed_trial_logs(client._session, experiment.id)
        raise ClusterError(message.rstrip("\n"))
    return int(experiment.id)


def _wall_seconds(session: Any, experiment_id: int) -> float:
    """Start to end of the experiment on the master (0 when it does not say)."""
    from determined.common import util
    from determined.common.api import bindings

    raw = bindings.get_GetExperiment(session, experimentId=experiment_id).experiment
    if not (raw.startTime and raw.endTime):
        return 0.0
    started = util.parse_protobuf_timestamp(raw.startTime)
    ended = util.parse_protobuf_timestamp(raw.endTime)
    return max(0.0, (ended - started).total_seconds())


def register_best_checkpoint(
    settings: Settings,
    experiment_id: int,
    exp_conf: dict[str, Any],
    *,
    registry: DeterminedRegistry | None = None,
    echo: Callable[[str], None] = click.echo,
) -> ModelVersion:
    """Register the best checkpoint of a finished experiment as the next model version.

    "Best" is the master's order by the config's ``searcher.metric`` and
    ``smaller_is_better`` (one trial for ``single``, every trial for a search). The checkpoint
    is downloaded once to read the CDL spec inside it (the data version the trial read), so a
    checkpoint that is not a CDL checkpoint is refused before anything is registered. One
    logged-in client (``registry``'s) serves the lookups, the download and the registration.
    """
    from cdl_gitlab.model.checkpoint import read_spec
    from cdl_gitlab.model.expconf import searcher_metric, slots_per_trial
    from cdl_gitlab.model.register import register_checkpoint

    master = settings.determined_master
    registry = registry or DeterminedRegistry(master)
    client = registry.client
    with master_errors(master, f"find the best checkpoint of experiment {experiment_id}"):
        best = client.get_experiment(experiment_id).list_checkpoints(max_results=1)
        wall = _wall_seconds(client._session, experiment_id)
    if not best:
        raise ClusterError(
            f"experiment {experiment_id} has no completed checkpoint with a validation: "
            "nothing to register (check min_validation_period / checkpoint policy)"
        )
    checkpoint = best[0]
    training = checkpoint.training
    if training is None:
        raise ClusterError(f"checkpoint {checkpoint.uuid} has no training metadata")
    validation = dict((training.validation_metrics or {}).get("avgMetrics") or {})
    metric, _ = searcher_metric(exp_conf)
    if metric not in validation:
        # the master sorts checkpoints without the searcher metric last: the "best" one has
        # none only when no checkpoint of the experiment was validated
        raise ClusterError(
            f"experiment {experiment_id} has no completed checkpoint with a validation of "
            f"{metric} (the best one, {checkpoint.uuid}, was never validated): nothing to "
            "register (validate before each checkpoint, e.g. validation_period in Trainer.fit)"
        )
    with tempfile.TemporaryDirectory(prefix="cdl-checkpoint-") as tmp:
        folder = Path(tmp) / checkpoint.uuid
        with master_errors(master, f"download checkpoint {checkpoint.uuid}"):
            checkpoint.download(str(folder))
        try:
            spec = read_spec(folder)
        except (FileNotFoundError, ValueError) as exc:
            raise ClusterError(f"checkpoint {checkpoint.uuid}: {exc}") from exc
        version = register_checkpoint(
            settings,
            checkpoint_uuid=checkpoint.uuid,
            checkpoint_path=folder,
            steps_completed=int((checkpoint.metadata or {}).get("steps_completed", 0)),
            exp_conf=exp_conf,
            hparams=dict(training.hparams or {}),
            experiment_id=experiment_id,
            trial_id=training.trial_id,
            validation={k: float(v) for k, v in validation.items()},
            train_data=spec.data,
            wall_seconds=wall,
            slots=slots_per_trial(exp_conf),
            tensorboard=None,
            # registry.backend mlflow: the version goes to the MLflow server (with the files)
            registry=None if settings.registry_backend == "mlflow" else registry,
        )
    record_experiment(
        settings, experiment_id, registered={"model": version.model, "version": version.version}
    )
    shown = ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(validation.items()))
    echo(f"best checkpoint {checkpoint.uuid} (trial {training.trial_id}; {shown or 'no metrics'})")
    return version


@dataclass
class ClusterRun:
    """A finished experiment on the master and, when registered, its model version."""

    experiment_id: int
    version: ModelVersion | None


def run_on_cluster(
    settings: Settings,
    config_path: Path,
    *,
    overrides: dict[str, Any] | None = None,
    register: bool = True,
) -> ClusterRun:
    """Submit ``config_path`` (with ``overrides``), wait for it, register its best checkpoint."""
    experiment_id = submit_experiment(
        settings, config_path, settings.root, wait=True, overrides=overrides
    )
    if not register:
        return ClusterRun(experiment_id, None)
    exp_conf = load_experiment_config(config_path, overrides)
    return ClusterRun(experiment_id, register_best_checkpoint(settings, experiment_id, exp_conf))


def register_cluster_experiment(settings: Settings, experiment_id: int) -> ModelVersion:
    """Register the best checkpoint of an experiment that ran on the master (submitted with
    the web UI, ``det``, or by another pipeline), with the config the master recorded."""
    master = settings.determined_master
    registry = DeterminedRegistry(master)
    with master_errors(master, f"get experiment {experiment_id}"):
        experiment = registry.client.get_experiment(experiment_id)
    state = experiment.state.value.removeprefix("STATE_")
    if state != "COMPLETED":
        raise ClusterError(f"experiment {experiment_id} is {state}: register it once it completes")
    config = without_secrets(settings, dict(experiment.config or {}))
    return register_best_checkpoint(settings, experiment_id, config, registry=registry)
