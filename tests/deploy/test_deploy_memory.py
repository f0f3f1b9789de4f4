"""Serving memory: measured from the packaged model, used for the pods' limit; readiness."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.config import load_settings
from cdl_gitlab.deploy.artifact import read_manifest
from cdl_gitlab.deploy.memory import MI, MemoryMeasurement, memory_limit
from cdl_gitlab.deploy.package import package_version
from cdl_gitlab.registry import LocalRegistry

SHA = "3f2a9c1d0b4e5f60718293a4b5c6d7e8f9a0b1c2"


def _auto(settings):
    config = settings.root / "cdl.yaml"
    config.write_text(config.read_text().replace("memory: 512Mi", "memory: auto"))
    return load_settings(config)


def _manifest(app: AppContext) -> dict:
    result = CliRunner().invoke(deploy, ["manifest", "--env", "staging", "--tag", SHA], obj=app)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


@pytest.mark.slow
def test_package_measures_and_manifest_derives_the_limit(text_project, tmp_path: Path) -> None:
    settings = _auto(text_project)
    app = AppContext(settings.root / "cdl.yaml", None)
    out = tmp_path / "artifact"
    args = ["package", "--version", "1", "--out", str(out), "--measure-memory"]
    result = CliRunner().invoke(deploy, args, obj=app)
    assert result.exit_code == 0, result.output
    measured = MemoryMeasurement.from_dict(read_manifest(out, verify=True).data["serving_memory"])
    # the main process imports Seldon and the component; a worker adds the model privately
    assert measured.base_rss > 100 * MI
    assert 0 < measured.worker_private < measured.worker_peak_rss
    assert measured.batch == 8  # cdl.yaml's max_batch: the largest accepted request
    limit = memory_limit(measured, 1)
    assert f"limit with 1 worker(s): {limit // MI}Mi" in result.output
    registry = LocalRegistry(settings.state_dir / "registry")
    stored = registry.get_version("news-demo", 1).metadata["serving_memory"]
    assert stored == measured.to_dict()
    doc = _manifest(app)
    container = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == f"{limit // MI}Mi"


def test_unmeasured_version_with_memory_auto_is_refused(text_project, tmp_path: Path) -> None:
    settings = _auto(text_project)
    app = AppContext(settings.root / "cdl.yaml", None)
    out = tmp_path / "artifact"
    runner = CliRunner()
    # the local profile does not measure by default (only the cluster's manifest reads it)
    done = runner.invoke(deploy, ["package", "--version", "1", "--out", str(out)], obj=app)
    assert done.exit_code == 0, done.output
    assert "serving_memory" not in json.loads((out / "model.json").read_text())
    refused = runner.invoke(deploy, ["manifest", "--env", "staging", "--tag", SHA], obj=app)
    assert refused.exit_code != 0
    assert "news-demo v1: deployment.memory is auto" in str(refused.exception)
    assert "cdl deploy package" in str(refused.exception)


def test_readiness_route_reflects_the_loaded_model(text_project, tmp_path: Path) -> None:
    """Seldon's /health/ping answers before the model is loaded; /health/status does not."""
    from seldon_core.metrics import SeldonMetrics
    from seldon_core.wrapper import get_rest_microservice

    from cdl_gitlab.serving.server import CDLModel

    folder, _ = package_version(text_project, 1, tmp_path / "artifact")
    model = CDLModel(str(folder))
    os.environ.pop("CDL_SCORING_URL", None)
    client = get_rest_microservice(model, SeldonMetrics()).test_client()
    assert client.get("/health/ping").status_code == 200  # the liveness route: always up
    assert client.get("/health/status").status_code == 503  # not ready: no model yet
    model.load()
    ready = client.get("/health/status")
    assert ready.status_code == 200 and ready.get_json()["jsonData"]["status"] == "ok"
