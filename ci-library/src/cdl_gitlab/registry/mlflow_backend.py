"""The ``mlflow`` model registry: an MLflow tracking server, GitLab's own model registry included.

Only calls of GitLab's MLflow subset (:data:`cdl_gitlab.mlflow_support.GITLAB_SUPPORTED`):

- a model is a registered model (``registered-models/create``) plus a catalogue run (tag
  ``cdl.kind=model``) in the experiment :data:`REGISTRY_EXPERIMENT`, because GitLab offers no
  registered-model search to list models;
- a version is a model version (``model-versions/create``, semver tag ``gitlab.version``
  ``<n>.0.0``) plus a version run in the same experiment. The run holds what GitLab cannot
  change on a model version after its creation: the metadata (JSON over ``cdl.metadata.*``
  tags), the metrics (``validation.*``, ``test.*``), the lineage tags (``lineage.*``), the
  production flag (tag ``cdl.production``: a version tag, no stage, no alias) and the
  checkpoint as one archive (``checkpoint.tar.gz``, logged with an empty artifact path).
  A version exists once its run carries ``cdl.registered=true``, written after the model
  version was created, so a registration that dies half-way leaves no visible version.

Metadata updates are read-modify-write on the run's tags (no server-side lock): concurrent
``add_metadata`` calls on one version may lose an update.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab import mlflow_support as mf
from cdl_gitlab.fsutil import atomic_directory
from cdl_gitlab.registry.base import (
    Checkpoint,
    ModelVersion,
    RegistryError,
    check_model_name,
    checkpoint_folder,
    download_target,
    ensure_json,
    in_production,
    merge_metadata,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

REGISTRY_EXPERIMENT = "cdl-model-registry"
"""Holds one catalogue run per model and one run per version (its name is no model's)."""
BATCH = 100
"""Tags or metrics per ``log-batch`` request (MLflow's limit for tags and params)."""


def training_experiment(model: str) -> str:
    """The experiment the tracker logs ``model``'s training runs to (never the model's name:
    GitLab refuses a registered model named like an experiment)."""
    return f"{model}-training"


def semver(version: int) -> str:
    """The ``gitlab.version`` of CDL version ``version``."""
    return f"{version}.0.0"


def lineage_tags(lineage: Mapping[str, Any]) -> dict[str, str]:
    """The lineage as run tags: code commit, data ``repo@commit``, hardware, environment, cost."""
    from cdl_gitlab.lineage import flatten

    code = lineage.get("code") or {}
    tags = {"lineage.code.commit": str(code.get("commit") or "unknown")}
    if code.get("branch"):
        tags["lineage.code.branch"] = str(code["branch"])
    for split, data in sorted((lineage.get("data") or {}).items()):
        if isinstance(data, Mapping) and data.get("repo"):
            tags[f"lineage.data.{split}"] = f"{data['repo']}@{data.get('commit') or '?'}"
    for section in ("hardware", "environment", "cost"):
        for key, value in flatten(dict(lineage.get(section) or {}), f"lineage.{section}."):
            tags[key] = value if isinstance(value, str) else json.dumps(value)
    return {key: value[:5000] for key, value in tags.items()}


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of ``metadata['metrics']`` as ``group.name`` metrics."""
    from cdl_gitlab.lineage import flatten

    return {
        key: float(value)
        for key, value in flatten(dict(metrics))
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


class MlflowRegistry:
    """The model registry on an MLflow tracking server (or GitLab's MLflow endpoint), with the
    operations of :class:`~cdl_gitlab.registry.ModelRegistry`."""

    stores_files = True

    def __init__(self, uri: str | None = None, client: MlflowClient | None = None) -> None:
        self._uri = uri
        self._client = client
        self._experiment: str | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        if self._uri is None:
            self._uri = mf.tracking_uri()
        return self._uri

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            try:
                self._client = mf.connect(self.uri)
            except mf.MlflowError as exc:
                raise RegistryError(str(exc)) from exc
        return self._client

    def _call(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _registry_errors(action)

    @property
    def experiment(self) -> str:
        if self._experiment is None:
            with self._call("open the registry experiment"):
                self._experiment = mf.experiment_id(self.client, REGISTRY_EXPERIMENT)
        return self._experiment

    def _runs(self) -> list[Run]:
        with self._call("read the registry"):
            return mf.search_all(self.client, self.experiment)

    def _log_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(run_id, tags=items[start : start + BATCH], synchronous=True)

    def _log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(datetime.now(UTC).timestamp() * 1000)
        items = [Metric(key, value, stamp, 0) for key, value in metrics.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[start : start + BATCH], synchronous=True)

    def _model_runs(self, runs: list[Run]) -> dict[str, Run]:
        found: dict[str, Run] = {}
        for run in runs:
            tags = run.data.tags
            if tags.get("cdl.kind") == "model" and tags.get("cdl.model"):
                found.setdefault(tags["cdl.model"], run)
        return found

    def _version_runs(self, name: str, runs: list[Run]) -> dict[int, Run]:
        found: dict[int, Run] = {}
        for run in runs:
            tags = run.data.tags
            if (
                tags.get("cdl.kind") == "version"
                and tags.get("cdl.model") == name
                and tags.get("cdl.registered") == "true"
            ):
                found.setdefault(int(tags["cdl.version"]), run)
        return found

    def _to_version(self, run: Run) -> ModelVersion:
        tags = run.data.tags
        return ModelVersion(
            model=tags["cdl.model"],
            version=int(tags["cdl.version"]),
            checkpoint_uuid=tags["cdl.checkpoint_uuid"],
            created=datetime.fromisoformat(tags["cdl.created"]),
            metadata=mf.read_json_tags(tags, "cdl.metadata") or {},
            path=None,
        )

    def _find(self, name: str, version: int | None) -> Run:
        runs = self._runs()
        if name not in self._model_runs(runs):
            raise RegistryError(f"model {name!r} is not in the registry (register a version first)")
        versions = self._version_runs(name, runs)
        if version is None:
            if not versions:
                raise RegistryError(f"model {name!r} has no registered versions yet")
            return versions[max(versions)]
        if version not in versions:
            raise RegistryError(f"model {name!r} has no version {version}")
        return versions[version]

    # -- operations ------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "", labels: Sequence[str] = ()) -> None:
        check_model_name(name)
        if name in self._model_runs(self._runs()):
            return
        try:
            with self._call(f"create model {name}"):
                self.client.create_registered_model(name, description=description or None)
        except RegistryError as exc:
            if mf.error_code(exc.__cause__ or exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        with self._call(f"create model {name}"):
            run = self.client.create_run(
                self.experiment,
                tags={"cdl.kind": "model", "cdl.model": name, "mlflow.runName": f"model {name}"},
            )
            self._log_tags(
                run.info.run_id,
                {"cdl.description": description, "cdl.labels": json.dumps(list(labels))},
            )

    def list_models(self) -> list[str]:
        return sorted(self._model_runs(self._runs()))

    def register_version(
        self, name: str, checkpoint: Checkpoint, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        check_model_name(name)
        meta = ensure_json(metadata or {})
        source = checkpoint_folder(checkpoint, "mlflow")
        self.create_model(name)
        existing = self._version_runs(name, self._runs())
        version = max(existing, default=0) + 1
        created = datetime.now(UTC)
        tags = {
            "cdl.kind": "version",
            "cdl.model": name,
            "cdl.version": str(version),
            "cdl.checkpoint_uuid": checkpoint.uuid,
            "cdl.created": created.isoformat(),
            "cdl.production": "false",
            mf.SEMVER_TAG: semver(version),
            **mf.json_tags("cdl.metadata", meta),
            **lineage_tags(meta.get("lineage") or {}),
        }
        if os.environ.get("CI_JOB_ID"):
            tags[mf.CI_JOB_TAG] = os.environ["CI_JOB_ID"]
        with self._call(f"register checkpoint {checkpoint.uuid} as {name} v{version}"):
            run = self.client.create_run(
                self.experiment, tags={"mlflow.runName": f"{name} v{version}"}
            )
            run_id = run.info.run_id
            self._log_tags(run_id, tags)
            self._log_metrics(run_id, metric_values(meta.get("metrics") or {}))
            self._upload_checkpoint(run.info.artifact_uri, source)
            self.client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/{mf.CHECKPOINT_ARCHIVE}",
                run_id=run_id,
                tags={mf.SEMVER_TAG: semver(version), "cdl.version": str(version)},
                await_creation_for=0,
            )
            self._log_tags(run_id, {"cdl.registered": "true"})
        self._tag_training_run(name, checkpoint.uuid, tags)
        return ModelVersion(name, version, checkpoint.uuid, created, meta, None)

    def _upload_checkpoint(self, artifact_uri: str, folder: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="cdl-mlflow-") as scratch:
            archive = mf.archive_folder(folder, Path(scratch) / mf.CHECKPOINT_ARCHIVE)
            mf.artifact_repository(artifact_uri, self.uri).log_artifact(str(archive))

    def _tag_training_run(self, name: str, checkpoint_uuid: str, tags: Mapping[str, str]) -> None:
        """Copy the lineage tags onto the training run that wrote the checkpoint, if tracked."""
        with self._call(f"find the training run of checkpoint {checkpoint_uuid}"):
            experiment = self.client.get_experiment_by_name(training_experiment(name))
            if experiment is None:
                return
            runs = mf.search_all(self.client, str(experiment.experiment_id))
            for run in runs:
                if run.data.tags.get("cdl.checkpoint_uuid") == checkpoint_uuid:
                    lineage = {k: v for k, v in tags.items() if k.startswith("lineage.")}
                    self._log_tags(run.info.run_id, lineage)

    def list_versions(self, name: str) -> list[ModelVersion]:
        runs = self._runs()
        if name not in self._model_runs(runs):
            raise RegistryError(f"model {name!r} is not in the registry (register a version first)")
        versions = self._version_runs(name, runs)
        return [self._to_version(versions[number]) for number in sorted(versions)]

    def get_version(self, name: str, version: int | None = None) -> ModelVersion:
        return self._to_version(self._find(name, version))

    def add_metadata(
        self,
        name: str,
        version: int,
        metadata: Mapping[str, Any],
        *,
        overwrite: bool = False,
    ) -> ModelVersion:
        update = ensure_json(metadata)
        run = self._find(name, version)
        current = self._to_version(run)
        try:
            merged = merge_metadata(current.metadata, update, overwrite=overwrite)
        except RegistryError as exc:
            raise RegistryError(f"{name} v{version}: {exc}") from exc
        result = ModelVersion(
            current.model, current.version, current.checkpoint_uuid, current.created, merged, None
        )
        tags = {
            **mf.json_tags("cdl.metadata", merged),
            "cdl.production": "true" if in_production(result) else "false",
        }
        if "lineage" in update:
            tags.update(lineage_tags(merged.get("lineage") or {}))
        with self._call(f"set metadata of {name} v{version}"):
            self._log_tags(run.info.run_id, tags)
            self._log_metrics(run.info.run_id, metric_values(update.get("metrics") or {}))
        return result

    def download(self, name: str, version: int | None = None, dest: Path | None = None) -> Path:
        run = self._find(name, version)
        number = int(run.data.tags["cdl.version"])
        target = download_target(name, number, dest)
        repo = mf.artifact_repository(run.info.artifact_uri, self.uri)
        with tempfile.TemporaryDirectory(prefix="cdl-mlflow-") as scratch:
            with self._call(f"download {name} v{number}"):
                archive = repo.download_artifacts(mf.CHECKPOINT_ARCHIVE, dst_path=scratch)
            with atomic_directory(target) as staging:
                mf.extract_archive(Path(archive), staging)
        return target


@contextlib.contextmanager
def _registry_errors(action: str) -> Iterator[None]:
    """Turn MLflow errors into RegistryError naming the action and the server."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except mf.MlflowError as exc:
        raise RegistryError(str(exc)) from exc
    except MlflowException as exc:
        first = str(exc.message).splitlines()[0] if exc.message else ""
        raise RegistryError(
            f"{action}: the MLflow server at {os.environ.get(mf.URI_ENV, '?')} "
            f"answered {exc.error_code}: {first}"
        ) from exc
