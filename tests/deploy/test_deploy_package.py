"""Packaging a registered version into a self-contained, checksummed artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from deploy_models import KNOWN_TEXTS, LINEAGE

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.deploy_cmd import deploy
from cdl_gitlab.deploy.artifact import ArtifactError, read_manifest
from cdl_gitlab.deploy.loading import load_artifact
from cdl_gitlab.deploy.package import ensure_packaged, package_version


def test_package_writes_self_contained_artifact(text_project, tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    folder, manifest = package_version(text_project, 1, out)
    assert folder == out
    data = json.loads((out / "model.json").read_text())
    assert data["name"] == "news-demo" and data["version"] == 1
    assert data["format"] == "native" and data["task"] == "text"
    assert data["classes"] == ["politics", "sport", "tech"]
    assert data["checksum"].startswith("sha256:") and data["checkpoint_uuid"] == "ckpt-0001"
    assert data["serving"]["max_batch"] == 8
    assert data["lineage_summary"]["lineage.code.commit"] == LINEAGE["code"]["commit"]
    assert json.loads((out / "lineage.json").read_text()) == LINEAGE
    assert json.loads((out / "classes.json").read_text()) == manifest.classes
    assert "checkpoint/model_state.pt" in data["files"]
    assert "checkpoint/features/transform.json" in data["files"]
    # Self-contained: loads and predicts from the folder alone.
    _, predictor = load_artifact(out)
    probabilities = predictor.predict_proba(list(KNOWN_TEXTS))
    labels = [predictor.classes[i] for i in probabilities.argmax(axis=1)]
    assert labels == list(KNOWN_TEXTS.values())


def test_tampered_artifact_is_refused(text_project, tmp_path: Path) -> None:
    folder, _ = package_version(text_project, 1, tmp_path / "artifact")
    (folder / "classes.json").write_text('["a", "b", "c"]')
    with pytest.raises(ArtifactError, match=r"classes\.json does not match"):
        read_manifest(folder, verify=True)
    (folder / "stray.txt").write_text("x")
    (folder / "classes.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(folder)


def test_repackaging_replaces_the_folder_atomically(text_project, tmp_path: Path) -> None:
    out = tmp_path / "out" / "artifact"
    package_version(text_project, 1, out)
    (out / "leftover").write_text("old")
    package_version(text_project, 1, out)
    assert not (out / "leftover").exists()
    assert [p.name for p in out.parent.iterdir()] == ["artifact"]  # no staging left behind


def test_ensure_packaged_reuses_a_verified_cache(text_project) -> None:
    first, _ = ensure_packaged(text_project, 1)
    stamp = (first / "model.json").stat().st_mtime_ns
    again, _ = ensure_packaged(text_project, 1)
    assert again == first and (first / "model.json").stat().st_mtime_ns == stamp
    (first / "lineage.json").write_text("{}")
    repaired, _ = ensure_packaged(text_project, 1)
    assert json.loads((repaired / "lineage.json").read_text()) == LINEAGE
    read_manifest(repaired, verify=True)


def test_cli_package(text_project, tmp_path: Path) -> None:
    runner = CliRunner()
    app = AppContext(text_project.root / "cdl.yaml", None)
    result = runner.invoke(deploy, ["package", "--out", str(tmp_path / "a")], obj=app)
    assert result.exit_code == 0, result.output
    assert "packaged news-demo v1 (native)" in result.output
    missing = runner.invoke(deploy, ["package", "--version", "7"], obj=app)
    assert missing.exit_code != 0 and "no version 7" in str(missing.exception)


def test_packaging_without_test_data_skips_reference(text_project, tmp_path: Path) -> None:
    """Monitoring on, but no test split here: packaging still succeeds, without reference."""
    config = text_project.root / "cdl.yaml"
    config.write_text(config.read_text() + "monitoring: {enabled: true}\n")
    from cdl_gitlab.config import load_settings

    folder, manifest = package_version(load_settings(config), 1, tmp_path / "artifact")
    assert "reference.json" not in manifest.data["files"]
    assert not (folder / "reference.json").exists()
