"""Reference statistics and per-request input statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monitor_data import (
    CLASSES,
    image_features,
    image_probabilities,
    make_images,
    make_texts,
    text_features,
    text_probabilities,
)

from cdl_gitlab.config import Settings
from cdl_gitlab.features.input_stats import image_stats, text_stats, vocabulary_set
from cdl_gitlab.features.text import stems
from cdl_gitlab.monitor import MonitorError
from cdl_gitlab.monitor.reference import (
    REFERENCE_FILE,
    artifact_reference_path,
    attach_reference,
    compute_reference,
    find_reference,
    load_reference,
    save_reference,
)
from cdl_gitlab.registry import Checkpoint, open_registry


def test_text_stats_counts_tokens_and_oov() -> None:
    vocabulary = vocabulary_set(["market", "share", "the"])
    stats = text_stats("The markets' shares fell: zorblat zorblat!", vocabulary)
    assert stats["n_chars"] == len("The markets' shares fell: zorblat zorblat!")
    assert stats["n_tokens"] == 6
    assert stats["n_oov"] == 3  # fell, zorblat, zorblat
    assert stats["oov_rate"] == pytest.approx(0.5)
    assert set(stats["top_stems"]) <= {"market", "share", "the"}
    assert text_stats("", vocabulary) == {
        "n_chars": 0,
        "n_tokens": 0,
        "n_oov": 0,
        "oov_rate": 0.0,
        "top_stems": {},
    }
    json.dumps(stats)
    # the model servers hand over the stems they computed for the model: the same statistics
    text = "The markets' shares fell: zorblat zorblat!"
    assert text_stats(text, vocabulary, stems(text)) == stats


def test_image_stats_scale_to_unit_range() -> None:
    pixels = np.full((4, 4), 255.0)
    pixels[0, 0] = 0.0
    stats = image_stats(pixels)
    assert stats["max"] == 1.0 and stats["min"] == 0.0
    assert stats["mean"] == pytest.approx(15 / 16, abs=1e-6)
    assert stats["shape"] == [4, 4]


def test_text_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    texts, labels = make_texts(300, rng)
    probabilities = text_probabilities(texts)
    reference = compute_reference(
        "text",
        [t.encode() for t in texts],
        probabilities,
        text_features(),
        labels=labels,
        sample_size=100,
    )
    assert reference["task"] == "text" and reference["classes"] == CLASSES
    assert set(reference["features"]) == {"n_chars", "n_tokens", "oov_rate"}
    chars = reference["features"]["n_chars"]
    assert chars["n"] == 300 and len(chars["sample"]) == 100
    assert sum(chars["counts"]) == 300 and len(chars["counts"]) == len(chars["edges"]) + 1
    assert chars["quantiles"]["p50"] == pytest.approx(np.median([len(t) for t in texts]), 0.05)
    assert sum(reference["predictions"]["counts"].values()) == 300
    assert reference["accuracy"] > 0.9
    profile = reference["stem_profile"]
    assert profile["stems"] and len(profile["stems"]) == len(profile["counts"])
    path = save_reference(tmp_path / REFERENCE_FILE, reference)
    assert load_reference(path) == reference


def test_image_reference_from_png_bytes() -> None:
    import io

    from PIL import Image

    rng = np.random.default_rng(4)
    images, _ = make_images(50, rng)
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray((image * 255).astype(np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    reference = compute_reference("image", pngs, image_probabilities(images), image_features())
    means = reference["features"]["pixel_mean"]
    assert means["mean"] == pytest.approx(np.mean([i.mean() for i in images]), abs=0.01)
    assert "pixel_std" in reference["features"]
    assert sum(reference["pixel_histogram"]["density"]) == pytest.approx(1.0, abs=1e-4)
    assert reference["accuracy"] is None


def test_reference_rejects_misshapen_predictions() -> None:
    with pytest.raises(MonitorError, match="shape"):
        compute_reference("text", ["a b"], np.ones((2, 3)) / 3, text_features())
    with pytest.raises(MonitorError, match="not CDL reference"):
        save_reference("/tmp/never-written.json", {"schema": 99})


def test_find_reference_order(text_project: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    texts, _ = make_texts(40, rng)
    reference = compute_reference("text", texts, text_probabilities(texts), text_features())
    registry = open_registry(text_project)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    version = registry.register_version("news", Checkpoint("c1", folder), {})
    found, why = find_reference(text_project, "news", 1, version.metadata)
    assert found is None and "cdl deploy package" in why
    save_reference(artifact_reference_path(text_project, "news", 1), reference)
    found, where = find_reference(text_project, "news", 1, version.metadata)
    assert found == reference and where.endswith(REFERENCE_FILE)
    attach_reference(registry, "news", 1, reference)
    attach_reference(registry, "news", 1, reference)  # re-packaging replaces it
    metadata = registry.get_version("news", 1).metadata
    found, where = find_reference(text_project, "news", 1, metadata)
    assert found == reference and "registry metadata" in where


def test_reference_for_package(
    text_project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `cdl deploy package` calls: the held-out split predicted by the packaged model."""
    from types import SimpleNamespace

    import cdl_gitlab.data.dataset
    from cdl_gitlab.errors import CDLError
    from cdl_gitlab.monitor.reference import reference_for_package

    texts, labels = make_texts(60, np.random.default_rng(8))
    checkpoint = tmp_path / "checkpoint"
    text_features().save(checkpoint)
    split = SimpleNamespace(
        items=[
            (f"{label}/{i}.txt", label, text.encode())
            for i, (text, label) in enumerate(zip(texts, labels, strict=True))
        ],
        version=SimpleNamespace(repo="news-test-validate", branch="master", commit="c0ffee"),
    )
    calls: list[str] = []

    def load_split(settings: Settings, name: str) -> SimpleNamespace:
        calls.append(name)
        return split

    predictor = SimpleNamespace(
        predict_proba=lambda items: text_probabilities([item.decode() for item in items])
    )
    monkeypatch.setattr(cdl_gitlab.data.dataset, "load_split", load_split)
    reference = reference_for_package(text_project, checkpoint, predictor)
    assert calls == ["test"] and reference is not None
    assert reference["n_items"] == 60 and reference["accuracy"] == 1.0
    assert reference["source"] == {
        "split": "test",
        "repo": "news-test-validate",
        "branch": "master",
        "commit": "c0ffee",
    }

    def unavailable(settings: Settings, name: str) -> None:
        raise CDLError("no data repo news-test-validate")

    monkeypatch.setattr(cdl_gitlab.data.dataset, "load_split", unavailable)
    assert reference_for_package(text_project, checkpoint, predictor) is None
