"""The model and deployment pipelines on ``registry.backend: mlflow``, end to end: train (real
Determined harness off-cluster, every trial logged as an MLflow run) -> register -> evaluate
gate -> package -> serve -> lineage, against

- a real ``mlflow server`` on 127.0.0.1 with a SQLite backend store,
- the same server with the PostgreSQL server on 127.0.0.1:5432 as backend store,
- the fake of GitLab's MLflow subset (unsupported endpoints answer 404 as on GitLab),

and in every case only REST paths of GitLab's subset (a recording proxy in front of the real
server, the fake's own record)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdl_gitlab.mlflow_support import gitlab_supports
from fakes.gitlab_mlflow import FakeGitLabMlflow
from fakes.mlflow_server import MLFLOW_BIN, RecordingProxy, mlflow_server

MODEL_TESTS = Path(__file__).resolve().parents[1] / "model"
DEPLOY_TESTS = Path(__file__).resolve().parents[1] / "deploy"
for folder in (MODEL_TESTS, DEPLOY_TESTS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _require_server() -> None:
    if not MLFLOW_BIN.exists():
        message = f"{MLFLOW_BIN} missing: run scripts/install-ci-tools.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql", "gitlab-fake"])
def tracking(request, tmp_path: Path, monkeypatch) -> Iterator[list[tuple[str, str]]]:
    """Points MLFLOW_TRACKING_URI at the backend; yields the list of recorded calls."""
    for name in ("CDL_PROFILE", "CDL_CONFIG", "CDL_REGISTRY", "CI_JOB_ID", "CDL_ARTIFACT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("CI_JOB_ID", "4711")
    if request.param == "gitlab-fake":
        with FakeGitLabMlflow(token="glpat-flow") as fake:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", fake.tracking_uri)
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "glpat-flow")
            yield fake.calls
        return
    _require_server()
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path / 'mlflow.sqlite'}"
        with mlflow_server(store, tmp_path / "server") as url, RecordingProxy(url) as proxy:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
            yield proxy.calls
        return
    postgres = request.getfixturevalue("postgres_server")
    with (
        postgres.database("cdl_mlflow") as store,
        mlflow_server(store, tmp_path / "server") as url,
        RecordingProxy(url) as proxy,
    ):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.url)
        yield proxy.calls


def _cdl(config: Path, *args: str) -> str:
    from cdl_gitlab.cli import cli

    result = CliRunner(mix_stderr=False).invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result.output


@pytest.mark.slow
def test_train_register_gate_package_serve_lineage(tracking, tmp_path: Path) -> None:
    from deploy_models import render_deployment
    from model_fixtures import make_project

    from cdl_gitlab.config import load_settings
    from cdl_gitlab.deploy.compression import compress_version
    from cdl_gitlab.deploy.package import package_version
    from cdl_gitlab.model.evaluate import evaluate_version
    from cdl_gitlab.model.train import train_local
    from cdl_gitlab.registry import open_registry, production_version
    from cdl_gitlab.registry.mlflow_backend import MlflowRegistry, training_experiment
    from cdl_gitlab.serving import local_server as local

    settings = make_project(tmp_path / "tiny", "pytorch", "text", hparams={"epochs": 4})
    config = settings.root / "cdl.yaml"
    config.write_text(config.read_text() + "registry: {backend: mlflow}\n")
    settings = load_settings(config)
    registry = open_registry(settings)
    assert isinstance(registry, MlflowRegistry)

    trained = train_local(settings, settings.path("model/const.yaml"))
    assert trained.version is not None and trained.version.version == 1
    stored = registry.get_version("tiny-text", 1)
    assert stored.checkpoint_uuid == trained.checkpoint_uuid
    assert stored.metadata["lineage"]["checkpoint"]["uuid"] == trained.checkpoint_uuid

    # the training run: hyperparameters, step metrics, checkpoint archive, lineage, CI job
    client = registry.client
    experiment = client.get_experiment_by_name(training_experiment("tiny-text"))
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["epochs"] == "4" and run.data.params["learning_rate"] == "0.01"
    assert any(key.startswith("validation.") for key in run.data.metrics)
    assert run.data.tags["gitlab.CI_JOB_ID"] == "4711"
    assert run.data.tags["cdl.checkpoint_uuid"] == trained.checkpoint_uuid
    assert run.data.tags["cdl.state"] == "COMPLETED"
    assert run.data.tags["lineage.data.train"].startswith("tiny-text-train")
    for key in ("lineage.code.commit", "lineage.hardware.cpu_cores", "lineage.cost.wall_seconds"):
        assert key in run.data.tags
    assert any(key.startswith("lineage.environment.") for key in run.data.tags)

    result = evaluate_version(settings, report_dir=tmp_path / "report")
    assert result.passed, result.message
    tested = registry.get_version("tiny-text", 1)
    assert tested.metadata["metrics"]["test"]["accuracy"] == pytest.approx(result.accuracy)

    names = {"project_slug": "tiny-text", "model_name": "tiny-text"}
    render_deployment(settings.root, {**names, "framework": "pytorch", "task": "text"})
    _, manifest = package_version(settings, 1, tmp_path / "artifact")
    assert manifest.version == 1 and manifest.data["lineage_summary"]

    info, process = local.serve(settings, 1, local.free_port(), local.free_port())
    try:
        status, answer = local.post_json(
            local.predictions_url(info.url), {"data": {"ndarray": ["match team goal season"]}}
        )
        assert status == 200, answer
        assert answer["meta"]["tags"]["version"] == "1"
    finally:
        local.stop(settings)
        local.stop_group(process.pid, grace=5)

    registry.add_metadata("tiny-text", 1, {"deployments": {"production": {"image": "i@sha256:1"}}})
    assert production_version(registry, "tiny-text").version == 1

    compressed = compress_version(settings, 1, max_drop=0.2)  # registers v2 from new files
    assert compressed.version == 2
    assert registry.get_version("tiny-text", 2).metadata["compression"]
    assert production_version(registry, "tiny-text").version == 1  # v2 is not deployed

    latest = json.loads(_cdl(config, "lineage", "--json"))
    assert latest["lineage"]["checkpoint"]["compressed_from"]["version"] == 1
    record = json.loads(_cdl(config, "lineage", "1", "--json"))
    assert record["lineage"]["checkpoint"]["uuid"] == trained.checkpoint_uuid
    assert record["lineage"]["metrics"]["test"]["accuracy"] == pytest.approx(result.accuracy)
    assert "tiny-text v1" in _cdl(config, "lineage", "1")
    assert "local id" in record["lineage"]["logs"]["experiment_registry"]
    card = _cdl(config, "model", "report", "--output", str(tmp_path / "card.md"))
    assert "tiny-text" in (tmp_path / "card.md").read_text() + card

    mlflow_calls = [call for call in tracking if call[1] != "/health"]
    assert mlflow_calls, "no MLflow request was recorded"
    assert [call for call in mlflow_calls if not gitlab_supports(*call)] == []
