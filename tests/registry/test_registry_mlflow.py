"""The ``mlflow`` registry backend through the real MLflow client, against a fake of GitLab's
MLflow endpoint at the HTTP boundary: every operation of the ModelRegistry interface, errors,
and only REST paths of GitLab's subset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdl_gitlab.mlflow_support import GITLAB_SUPPORTED, MlflowError, gitlab_supports
from cdl_gitlab.registry import (
    ModelRegistry,
    RegistryError,
    in_production,
    open_registry,
    production_version,
)
from cdl_gitlab.registry.mlflow_backend import MlflowRegistry
from fakes.gitlab_mlflow import FakeGitLabMlflow


@pytest.fixture
def gitlab(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitLabMlflow]:
    with FakeGitLabMlflow(token="glpat-mlflow") as fake:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.tracking_uri)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "glpat-mlflow")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.delenv("CDL_REGISTRY", raising=False)
        yield fake


def unsupported(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [call for call in calls if not gitlab_supports(*call)]


def test_supported_list_matches_the_issue_and_rejects_the_rest() -> None:
    assert gitlab_supports("POST", "/api/2.0/mlflow/runs/log-batch")
    assert gitlab_supports("PUT", "/api/2.0/mlflow-artifacts/artifacts/candidate_1/ckpt.tar.gz")
    for method, path in [
        ("POST", "/api/2.0/mlflow/runs/update"),  # set_terminated
        ("GET", "/api/2.0/mlflow/runs/get"),
        ("POST", "/api/2.0/mlflow/model-versions/set-tag"),
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        ("POST", "/api/2.0/mlflow/model-versions/transition-stage"),
        ("POST", "/api/2.0/mlflow/logged-models"),
        ("GET", "/api/3.0/mlflow/server-info"),
        ("GET", "/api/2.0/mlflow/registered-models/search"),
    ]:
        assert not gitlab_supports(method, path), path
    assert len({path for _, path in GITLAB_SUPPORTED}) == len(GITLAB_SUPPORTED) - 1  # GET+PUT


def test_open_registry_follows_registry_backend(settings, monkeypatch, gitlab) -> None:
    assert not isinstance(open_registry(settings), MlflowRegistry)
    monkeypatch.setenv("CDL_REGISTRY", "mlflow")
    assert isinstance(open_registry(settings), MlflowRegistry)
    monkeypatch.setenv("CDL_REGISTRY", "wandb")
    with pytest.raises(Exception, match="CDL_REGISTRY='wandb': use one of local, determined"):
        open_registry(settings)


def test_every_operation_on_gitlabs_subset(gitlab, make_checkpoint, tmp_path: Path) -> None:
    registry = MlflowRegistry()
    assert isinstance(registry, ModelRegistry) and registry.stores_files
    lineage = {
        "code": {"commit": "c0ffee", "branch": "dev"},
        "data": {"train": {"repo": "news-train-validate", "branch": "master", "commit": "d1"}},
        "hardware": {"cpu_cores": 2, "gpu_count": 0},
        "environment": {"python": "3.11", "packages": {"torch": "2.13.0"}},
        "cost": {"wall_seconds": 12.5, "device_hours": 0.003},
    }
    first = registry.register_version(
        "news",
        make_checkpoint("ckpt-1"),
        {"metrics": {"validation": {"accuracy": 0.8}}, "lineage": lineage, "big": "x" * 9000},
    )
    second = registry.register_version("news", make_checkpoint("ckpt-2"), {"k": 1})
    assert (first.version, second.version) == (1, 2)
    assert registry.list_models() == ["news"]
    assert [v.checkpoint_uuid for v in registry.list_versions("news")] == ["ckpt-1", "ckpt-2"]
    assert registry.get_version("news").version == 2
    assert registry.get_version("news", 1).metadata["big"] == "x" * 9000  # over 3 tags

    # GitLab's model versions: semver from gitlab.version, source and run id dropped
    assert [v["version"] for v in gitlab.versions["news"]] == ["1.0.0", "2.0.0"]
    version_run = next(
        run
        for run in gitlab.runs.values()
        if {"key": "cdl.version", "value": "1"} in run["data"]["tags"]
    )
    tags = {tag["key"]: tag["value"] for tag in version_run["data"]["tags"]}
    assert tags["lineage.code.commit"] == "c0ffee"
    assert tags["lineage.data.train"] == "news-train-validate@d1"
    assert tags["lineage.hardware.cpu_cores"] == "2"
    assert tags["lineage.environment.packages.torch"] == "2.13.0"
    assert tags["lineage.cost.wall_seconds"] == "12.5"
    assert tags["gitlab.version"] == "1.0.0" and tags["cdl.production"] == "false"
    assert {m["key"] for m in version_run["data"]["metrics"]} == {"validation.accuracy"}

    updated = registry.add_metadata("news", 1, {"metrics": {"test": {"accuracy": 0.9}}})
    assert updated.metadata["metrics"]["test"] == {"accuracy": 0.9}
    assert updated.metadata["metrics"]["validation"] == {"accuracy": 0.8}
    with pytest.raises(RegistryError, match=r"news v1: metadata key metrics.test.accuracy"):
        registry.add_metadata("news", 1, {"metrics": {"test": {"accuracy": 0.5}}})
    registry.add_metadata("news", 1, {"deployments": {"production": {"image": "i@sha256:1"}}})
    assert in_production(registry.get_version("news", 1))
    assert production_version(registry, "news").version == 1
    tags = {tag["key"]: tag["value"] for tag in version_run["data"]["tags"]}
    assert tags["cdl.production"] == "true"

    folder = registry.download("news", 1, tmp_path / "dl")
    assert (folder / "state_dict.pth").read_text() == "ckpt-1"
    with pytest.raises(RegistryError, match="is not empty"):
        registry.download("news", 1, tmp_path / "dl")

    with pytest.raises(RegistryError, match="model 'news' has no version 9"):
        registry.get_version("news", 9)
    with pytest.raises(RegistryError, match="model 'other' is not in the registry"):
        registry.list_versions("other")
    with pytest.raises(RegistryError, match="needs the checkpoint folder"):
        from cdl_gitlab.registry import Checkpoint

        registry.register_version("news", Checkpoint("no-files"))
    assert unsupported(gitlab.calls) == []
    assert ("POST", "/api/2.0/mlflow/model-versions/create") in gitlab.calls


def test_the_fake_answers_unsupported_endpoints_like_gitlab(gitlab) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(gitlab.tracking_uri, gitlab.tracking_uri)
    run = client.create_run(client.create_experiment("e"))
    with pytest.raises(MlflowException, match="404"):
        client.get_run(run.info.run_id)  # runs/get: not in the issue's list of GitLab's subset
    assert unsupported(gitlab.calls) == [("GET", "/api/2.0/mlflow/runs/get")]


def test_missing_uri_and_refused_token_are_clear(gitlab, monkeypatch, make_checkpoint) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(RegistryError, match="MLFLOW_TRACKING_URI is not set"):
        MlflowRegistry().list_models()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://x")
    with pytest.raises(RegistryError, match="must be an http"):
        MlflowRegistry().list_models()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gitlab.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong")
    with pytest.raises((RegistryError, MlflowError), match=r"401|Unauthorized|PERMISSION"):
        MlflowRegistry().list_models()


def test_backend_resolution_by_profile(project, monkeypatch) -> None:
    from cdl_gitlab.config import load_settings

    config = project / "cdl.yaml"
    config.write_text(config.read_text() + "registry: {backend: determined}\n")
    assert load_settings(config).registry_backend == "local"  # the local profile's own
    monkeypatch.setenv("CDL_PROFILE", "cluster")
    assert load_settings(config).registry_backend == "determined"
    monkeypatch.setenv("CDL_REGISTRY", "mlflow")
    assert load_settings(config).registry_backend == "mlflow"  # in both profiles


def test_tracker_logs_a_trial_as_a_run(gitlab, settings, monkeypatch, tmp_path: Path) -> None:
    from cdl_gitlab.tracking import open_experiment_registry
    from cdl_gitlab.tracking.mlflow_tracker import MlflowExperimentRegistry

    monkeypatch.setenv("CDL_REGISTRY", "mlflow")
    monkeypatch.setenv("CI_JOB_ID", "99")
    from cdl_gitlab.config import load_settings

    experiments = open_experiment_registry(load_settings(settings.root / "cdl.yaml"))
    assert isinstance(experiments, MlflowExperimentRegistry)
    experiment = experiments.create_experiment("news", {"name": "news"}, {"profile": "local"})
    trial = experiments.create_trial(experiment, {"lr": 0.1, "layers": {"hidden": 8}})
    experiments.report_metrics(trial, "training", 10, {"loss": 0.9})
    experiments.report_metrics(trial, "validation", 10, {"accuracy": 0.7})
    experiments.report_metrics(trial, "validation", 20, {"accuracy": 0.8})
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"w" * 10)
    experiments.add_checkpoint(trial, "ck-1", folder, 20, {})
    experiments.end_trial(trial, "COMPLETED")
    assert experiments.get_experiment(experiment).trials[0].state == "COMPLETED"  # local too

    (run,) = [r for r in gitlab.runs.values() if r["info"]["run_id"] == experiments.run_id(trial)]
    assert gitlab.experiments[run["info"]["experiment_id"]]["name"] == "news-training"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"lr": "0.1", "layers.hidden": "8"}
    steps = [(m["key"], m["step"], m["value"]) for m in run["data"]["metrics"]]
    assert steps == [
        ("training.loss", 10, 0.9),
        ("validation.accuracy", 10, 0.7),
        ("validation.accuracy", 20, 0.8),
    ]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["cdl.state"] == "COMPLETED" and tags["gitlab.CI_JOB_ID"] == "99"
    assert tags["cdl.checkpoint_uuid"] == "ck-1"
    (archive,) = [key for key in gitlab.artifacts if key.endswith("checkpoint-ck-1.tar.gz")]
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gitlab.artifacts[archive])) as tar:
        assert tar.getnames() == ["sub/weights.bin"]
    assert unsupported(gitlab.calls) == []


def test_cluster_run_registers_in_mlflow(
    gitlab, project, det_master, monkeypatch, tmp_path
) -> None:
    """Cluster profile, ``registry.backend: mlflow``: Determined trains and serves the
    checkpoint; the version (with its files and lineage) goes to the MLflow server."""
    import yaml
    from test_registry_determined import _cdl_checkpoint, _context

    from cdl_gitlab.config import load_settings
    from cdl_gitlab.data.names import validated_repo
    from cdl_gitlab.data.stores import open_store
    from cdl_gitlab.model.cluster import register_best_checkpoint, submit_experiment
    from fakes.determined_master import trial_endpoints
    from fakes.pachd import FakePachd

    config = project / "cdl.yaml"
    config.write_text(
        config.read_text().replace("http://127.0.0.1:1", det_master.url)
        + "registry: {backend: mlflow}\n"
    )
    monkeypatch.setenv("CDL_PROFILE", "cluster")
    pachd = FakePachd().start()
    try:
        monkeypatch.setenv("PACHD_ADDRESS", pachd.address)
        trial_endpoints(monkeypatch)
        settings = load_settings(config)
        store = open_store(settings)
        store.create_repo(validated_repo(settings, "test"))
        store.put(validated_repo(settings, "test"), "master", {"sport/1.txt": b"a match"}, "v")
        context = _context(tmp_path)
        experiment_id = submit_experiment(
            settings, context / "const.yaml", context, poll_interval=0.01, echo=print
        )
        train = {"repo": "news-train-validate", "branch": "master", "commit": "c0ffee"}
        det_master.add_checkpoint(
            "best",
            _cdl_checkpoint(train),
            experiment_id,
            experiment_id * 100 + 1,
            validation={"validation_loss": 0.1},
        )
        exp_conf = yaml.safe_load((context / "const.yaml").read_text())
        version = register_best_checkpoint(settings, experiment_id, exp_conf, echo=print)
    finally:
        pachd.stop()
    assert (version.model, version.version, version.checkpoint_uuid) == ("news", 1, "best")
    stored = MlflowRegistry().get_version("news", 1)
    assert stored.metadata["lineage"]["data"]["train"] == train
    folder = MlflowRegistry().download("news", 1, tmp_path / "dl")
    assert (folder / "model_state.pt").read_bytes() == b"weights"
    assert gitlab.versions["news"][0]["version"] == "1.0.0"
    assert unsupported(gitlab.calls) == []
