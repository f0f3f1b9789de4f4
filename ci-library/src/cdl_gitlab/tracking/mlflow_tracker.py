"""Experiment tracking on an MLflow server (``registry.backend: mlflow``).

:class:`MlflowExperimentRegistry` is the local experiment registry (SQLite, which keeps the
ids, the best-trial choice and the reports working off-line) that also logs every trial as an
MLflow run in the experiment ``<model>-training``: the hyperparameters as params, each report
as step metrics (``training.<name>``, ``validation.<name>``), each checkpoint folder as one
archive artifact ``checkpoint-<uuid>.tar.gz`` and the run's end state as the tag
``cdl.state``, plus ``gitlab.CI_JOB_ID`` in CI. Registration adds the lineage tags
(:mod:`cdl_gitlab.registry.mlflow_backend`). Only calls of GitLab's MLflow subset.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab import mlflow_support as mf
from cdl_gitlab.tracking.local import ExperimentRegistry, MetricGroup, TrackingError, TrialState

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_PARAMS = 100
"""Params per ``log-batch`` request."""


class MlflowExperimentRegistry(ExperimentRegistry):
    """The local experiment registry, mirrored trial by trial to an MLflow server."""

    def __init__(self, path: Path, model: str, client: MlflowClient | None = None) -> None:
        super().__init__(path)
        self.model = model
        self._client = client
        self._experiment: str | None = None
        self._runs: dict[int, str] = {}
        self._artifacts: dict[str, str] = {}
        self._labels: dict[int, dict[str, str]] = {}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = mf.connect()
        return self._client

    @property
    def mlflow_experiment(self) -> str:
        from cdl_gitlab.registry.mlflow_backend import training_experiment

        if self._experiment is None:
            self._experiment = mf.experiment_id(self.client, training_experiment(self.model))
        return self._experiment

    def run_id(self, trial_id: int) -> str:
        """The MLflow run of a trial this process started."""
        try:
            return self._runs[trial_id]
        except KeyError:
            raise TrackingError(f"trial {trial_id} has no MLflow run in this process") from None

    def create_experiment(
        self, name: str, config: dict[str, Any], labels: Mapping[str, str] | None = None
    ) -> int:
        experiment_id = super().create_experiment(name, config, labels)
        self._labels[experiment_id] = {"experiment": name, **dict(labels or {})}
        return experiment_id

    def create_trial(self, experiment_id: int, hparams: dict[str, Any]) -> int:
        trial_id = super().create_trial(experiment_id, hparams)
        from mlflow.entities import Param, RunTag

        tags = {
            "cdl.model": self.model,
            "cdl.local_experiment_id": str(experiment_id),
            "cdl.local_trial_id": str(trial_id),
            "cdl.state": "ACTIVE",
            **{f"cdl.{k}": str(v) for k, v in self._labels.get(experiment_id, {}).items()},
        }
        if os.environ.get("CI_JOB_ID"):
            tags[mf.CI_JOB_TAG] = os.environ["CI_JOB_ID"]
        params = [Param(k, v[:6000]) for k, v in mf.flat_params(hparams).items()]
        with mf.mlflow_errors(f"start the MLflow run of trial {trial_id}"):
            run = self.client.create_run(
                self.mlflow_experiment,
                tags={"mlflow.runName": f"{self.model} trial {trial_id}"},
            )
            run_id = run.info.run_id
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            for start in range(0, len(params), MAX_PARAMS):
                self.client.log_batch(run_id, params=params[start : start + MAX_PARAMS])
        self._runs[trial_id] = run_id
        self._artifacts[run_id] = str(run.info.artifact_uri)
        return trial_id

    def report_metrics(
        self,
        trial_id: int,
        group: MetricGroup,
        steps_completed: int,
        metrics: Mapping[str, float],
    ) -> None:
        super().report_metrics(trial_id, group, steps_completed, metrics)
        from mlflow.entities import Metric

        stamp = int(datetime.now(UTC).timestamp() * 1000)
        values = [
            Metric(f"{group}.{key}", float(value), stamp, int(steps_completed))
            for key, value in metrics.items()
        ]
        with mf.mlflow_errors(f"log {group} metrics of trial {trial_id}"):
            self.client.log_batch(self.run_id(trial_id), metrics=values)

    def add_checkpoint(
        self,
        trial_id: int,
        uuid: str,
        path: Path,
        steps_completed: int,
        metadata: Mapping[str, Any],
    ) -> None:
        super().add_checkpoint(trial_id, uuid, path, steps_completed, metadata)
        from mlflow.entities import RunTag

        run_id = self.run_id(trial_id)
        with mf.mlflow_errors(f"log checkpoint {uuid} of trial {trial_id}"):
            artifact_uri = self._artifacts[run_id]
            with tempfile.TemporaryDirectory(prefix="cdl-mlflow-") as scratch:
                archive = mf.archive_folder(Path(path), Path(scratch) / f"checkpoint-{uuid}.tar.gz")
                repo = mf.artifact_repository(artifact_uri, mf.tracking_uri())
                repo.log_artifact(str(archive))
            self.client.log_batch(
                run_id,
                tags=[
                    RunTag("cdl.checkpoint_uuid", uuid),
                    RunTag("cdl.checkpoint_steps", str(int(steps_completed))),
                ],
            )

    def end_trial(self, trial_id: int, state: TrialState) -> None:
        super().end_trial(trial_id, state)
        if trial_id in self._runs:
            from mlflow.entities import RunTag

            with mf.mlflow_errors(f"record the end of trial {trial_id}"):
                self.client.log_batch(self._runs[trial_id], tags=[RunTag("cdl.state", state)])
