"""Compression: quantized versions are smaller, compared, gated and servable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deploy_models import IMAGE_CLASSES, KNOWN_TEXTS, images, text_corpus

from cdl_gitlab.deploy import compression
from cdl_gitlab.deploy.compression import CompressionRejected, compress_version
from cdl_gitlab.deploy.loading import load_artifact
from cdl_gitlab.deploy.package import package_version
from cdl_gitlab.registry import Checkpoint, DeterminedRegistry, LocalRegistry


def _text_test_data() -> tuple[list, list, dict]:
    texts, labels = text_corpus(10, seed=7)
    return [t.encode() for t in texts], labels, {"repo": "demo-test", "commit": "beef"}


def test_torch_int8_compression_registers_a_smaller_equivalent_version(text_project) -> None:
    registry = LocalRegistry(text_project.state_dir / "registry")
    result = compress_version(text_project, 1, data=_text_test_data())
    comparison = result.comparison
    assert result.version == 2 and comparison["passed"] is True
    assert comparison["format"] == "torch-int8" and comparison["source_version"] == 1
    size = comparison["size_bytes"]
    assert size["compressed"] < size["original"] and size["ratio"] < 0.8
    assert comparison["accuracy"]["original"] == 1.0
    assert comparison["accuracy"]["drop"] <= 0.05 and comparison["accuracy"]["test_items"] == 30
    assert comparison["latency_ms"]["original"]["p50"] > 0
    assert comparison["test_data"] == {"repo": "demo-test", "commit": "beef"}

    version = registry.get_version("news-demo", 2)
    assert version.metadata["compression"] == comparison
    source = version.metadata["lineage"]["checkpoint"]["compressed_from"]
    assert source == {
        "model": "news-demo",
        "version": 1,
        "uuid": "ckpt-0001",
        "format": "torch-int8",
    }
    assert version.checkpoint_uuid == "ckpt-0001-torch-int8"
    assert version.metadata["lineage"]["code"]["commit"].startswith("0123")
    assert not (version.path / "model_state.pt").exists()  # no float weights inside

    folder, manifest = package_version(text_project, 2)
    assert manifest.format == "torch-int8" and manifest.data["source_version"] == 1
    _, predictor = load_artifact(folder)
    probabilities = predictor.predict_proba(list(KNOWN_TEXTS))
    assert [predictor.classes[i] for i in probabilities.argmax(axis=1)] == list(
        KNOWN_TEXTS.values()
    )


def test_gate_refuses_a_forced_accuracy_drop(text_project) -> None:
    with pytest.raises(CompressionRejected) as info:
        compress_version(text_project, 1, data=_text_test_data(), max_drop=-1.0)
    assert info.value.exit_code == 3
    assert info.value.comparison["passed"] is False
    assert "max_accuracy_drop" in str(info.value) and "not registered" in str(info.value)
    registry = LocalRegistry(text_project.state_dir / "registry")
    assert [v.version for v in registry.list_versions("news-demo")] == [1]


def test_gate_refuses_a_real_accuracy_drop(text_project, monkeypatch) -> None:
    """A quantized model that really predicts worse (patched to always say 'tech')."""
    from cdl_gitlab.deploy import compression

    original = compression.TorchInt8Predictor.load

    def broken(folder: Path):
        predictor = original(folder)
        predictor.predict_proba = lambda items: np.tile([0.0, 0.0, 1.0], (len(items), 1))
        return predictor

    monkeypatch.setattr(compression.TorchInt8Predictor, "load", staticmethod(broken))
    with pytest.raises(CompressionRejected) as info:
        compress_version(text_project, 1, data=_text_test_data())
    accuracy = info.value.comparison["accuracy"]
    assert accuracy["compressed"] == pytest.approx(1 / 3) and accuracy["drop"] > 0.05


def test_compressed_versions_are_not_compressed_again(text_project) -> None:
    compress_version(text_project, 1, data=_text_test_data())
    with pytest.raises(Exception, match="already a compressed version"):
        compress_version(text_project, 2, data=_text_test_data())


@pytest.mark.slow
def test_keras_tflite_compression(image_project) -> None:
    pixels, labels = images(10, seed=5)
    result = compress_version(image_project, 1, data=(list(pixels), labels, {"repo": "demo-test"}))
    comparison = result.comparison
    assert comparison["format"] == "tflite" and comparison["passed"]
    assert comparison["size_bytes"]["compressed"] < comparison["size_bytes"]["original"]
    folder, manifest = package_version(image_project, result.version)
    assert manifest.format == "tflite"
    _, predictor = load_artifact(folder)
    predicted = predictor.predict_proba(list(pixels)).argmax(axis=1)
    assert [IMAGE_CLASSES[i] for i in predicted] == labels


def test_cli_compress_prints_the_comparison(text_project, monkeypatch) -> None:
    from click.testing import CliRunner

    from cdl_gitlab.cli.app import AppContext
    from cdl_gitlab.cli.deploy_cmd import deploy

    monkeypatch.setattr(
        "cdl_gitlab.deploy.compression.test_inputs", lambda settings: _text_test_data()
    )
    runner = CliRunner()
    app = AppContext(text_project.root / "cdl.yaml", None)
    result = runner.invoke(deploy, ["compress"], obj=app)
    assert result.exit_code == 0, result.output
    assert "format           torch-int8 (from v1)" in result.output
    assert "registered the compressed model as v2" in result.output
    from cdl_gitlab.deploy import compression

    always_tech = compression.TorchInt8Predictor.load

    def broken(folder: Path):
        predictor = always_tech(folder)
        predictor.predict_proba = lambda items: np.tile([0.0, 0.0, 1.0], (len(items), 1))
        return predictor

    monkeypatch.setattr(compression.TorchInt8Predictor, "load", staticmethod(broken))
    refused = runner.invoke(deploy, ["compress", "--version", "1"], obj=app)
    assert isinstance(refused.exception, CompressionRejected)
    assert refused.exception.exit_code == 3
    assert "test accuracy    1.0000 -> 0.3333" in refused.output


def test_on_determined_the_passed_gate_is_recorded_on_the_source_version(
    text_project, text_checkpoint: Path, det_master, monkeypatch
) -> None:
    from click.testing import CliRunner

    from cdl_gitlab.cli.app import AppContext
    from cdl_gitlab.cli.deploy_cmd import deploy

    files = {
        path.relative_to(text_checkpoint).as_posix(): path.read_bytes()
        for path in text_checkpoint.rglob("*")
        if path.is_file()
    }
    det_master.add_checkpoint("ckpt-0001", files)
    registry = DeterminedRegistry(det_master.url)
    registry.register_version("news-demo", Checkpoint("ckpt-0001"), {"framework": "pytorch"})

    result = compress_version(text_project, 1, registry=registry, data=_text_test_data())

    assert result.version is None and result.comparison["passed"] is True
    assert result.comparison["format"] == "torch-int8"
    assert [v.version for v in registry.list_versions("news-demo")] == [1]  # nothing half-made
    source = registry.get_version("news-demo", 1)
    assert source.metadata["compression_gate"] == result.comparison
    assert source.metadata["framework"] == "pytorch"  # merged, not replaced
    # the CI job (cluster profile) can run the gate again: the record is updated and it says
    # which version stays the one to deploy
    monkeypatch.setattr(
        "cdl_gitlab.deploy.compression.test_inputs", lambda settings: _text_test_data()
    )
    monkeypatch.setenv("DET_MASTER", det_master.url)
    app = AppContext(text_project.root / "cdl.yaml", "cluster")
    result = CliRunner().invoke(deploy, ["compress"], obj=app)
    assert result.exit_code == 0, result.output
    assert "recorded on v1 (compression_gate), which stays the version to deploy" in result.output
    assert [v.version for v in registry.list_versions("news-demo")] == [1]
    recorded = registry.get_version("news-demo", 1).metadata["compression_gate"]
    assert recorded["passed"] is True and recorded["source_version"] == 1


def test_latency_is_measured_on_the_threads_a_server_gives_pytorch(
    text_checkpoint, monkeypatch
) -> None:
    # intra-op threads stall on a machine whose other core is busy (a CI runner's): the
    # comparison measures what the server runs, one thread unless OMP_NUM_THREADS says more
    import torch

    from cdl_gitlab.model.predictor import load_predictor

    predictor = load_predictor(text_checkpoint)
    seen: list[int] = []
    predictor.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    texts, _, _ = _text_test_data()
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    try:
        latency = compression.latency_ms(predictor, texts, runs=5)
        assert set(seen) == {1} and len(seen) == 7  # two warm-ups, five timed calls
        assert torch.get_num_threads() == 2  # the caller's threads afterwards
        seen.clear()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        compression.latency_ms(predictor, texts, runs=2)
        assert set(seen) == {3}
    finally:
        torch.set_num_threads(before)
    assert 0 < latency["p50"] <= latency["p99"]
