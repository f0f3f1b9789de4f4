"""The real model pipeline into the deployment pipeline: train (Determined harness off-cluster),
package, compress against the real test split, serve with seldon-core and predict."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODEL_TESTS = Path(__file__).resolve().parents[1] / "model"


@pytest.mark.slow
def test_trained_text_model_is_packaged_compressed_and_served(tmp_path: Path) -> None:
    if str(MODEL_TESTS) not in sys.path:
        sys.path.insert(0, str(MODEL_TESTS))
    from deploy_models import render_deployment
    from model_fixtures import make_project

    from cdl_gitlab.config import load_settings
    from cdl_gitlab.deploy.compression import compress_version
    from cdl_gitlab.deploy.package import package_version
    from cdl_gitlab.model.train import train_local
    from cdl_gitlab.monitor.reference import load_reference
    from cdl_gitlab.registry import LocalRegistry
    from cdl_gitlab.serving import local_server

    settings = make_project(tmp_path / "tiny", "pytorch", "text", hparams={"epochs": 6})
    config = settings.root / "cdl.yaml"
    config.write_text(config.read_text() + "monitoring: {enabled: true}\n")
    settings = load_settings(config)
    render_deployment(
        settings.root,
        {
            "project_slug": "tiny-text",
            "model_name": "tiny-text",
            "framework": "pytorch",
            "task": "text",
        },
    )
    trained = train_local(settings, settings.path("model/const.yaml"))
    version = trained.version.version

    folder, manifest = package_version(settings, version, tmp_path / "artifact")
    assert manifest.version == version and manifest.data["lineage_summary"]
    assert "reference.json" in manifest.data["files"]  # monitoring's reference statistics
    reference = load_reference(folder / "reference.json")
    assert reference["n_items"] > 0 and reference["classes"] == manifest.classes
    stored = LocalRegistry(settings.state_dir / "registry").get_version("tiny-text", version)
    assert stored.metadata["monitoring"]["reference"]["n_items"] == reference["n_items"]

    result = compress_version(settings, version, max_drop=0.2)  # the real test split
    assert result.comparison["test_data"] and result.comparison["accuracy"]["test_items"] > 0
    assert result.comparison["size_bytes"]["ratio"] < 1.0

    info, process = local_server.serve(
        settings, result.version, local_server.free_port(), local_server.free_port()
    )
    try:
        status, answer = local_server.post_json(
            local_server.predictions_url(info.url),
            {"data": {"ndarray": ["some words to classify"]}},
        )
        assert status == 200, answer
        assert answer["meta"]["tags"]["version"] == str(result.version)
        assert answer["data"]["names"] == manifest.classes
    finally:
        local_server.stop(settings)
        local_server.stop_group(process.pid, grace=5)
