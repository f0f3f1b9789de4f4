"""Loading an artifact's predictor, whatever its format (native checkpoint or compressed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cdl_gitlab.deploy.artifact import (
    CHECKPOINT_DIR,
    ArtifactError,
    ArtifactManifest,
    read_manifest,
)


@runtime_checkable
class Predictor(Protocol):
    """What serving needs from a model: class names and probabilities for raw inputs."""

    classes: list[str]

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray: ...


def load_format(checkpoint_dir: Path, fmt: str) -> Predictor:
    """The predictor of a checkpoint folder in ``fmt`` (``native``, ``torch-int8``, ``tflite``)."""
    if fmt == "native":
        from cdl_gitlab.model.predictor import load_predictor

        return load_predictor(checkpoint_dir)
    if fmt == "torch-int8":
        from cdl_gitlab.deploy.compression import TorchInt8Predictor

        return TorchInt8Predictor.load(checkpoint_dir)
    if fmt == "tflite":
        from cdl_gitlab.deploy.compression import TFLitePredictor

        return TFLitePredictor.load(checkpoint_dir)
    raise ArtifactError(f"{checkpoint_dir}: unknown model format {fmt!r}")


def load_artifact(folder: Path, verify: bool = True) -> tuple[ArtifactManifest, Predictor]:
    """The manifest and predictor of the artifact in ``folder`` (checksums verified)."""
    manifest = read_manifest(folder, verify=verify)
    predictor = load_format(Path(folder) / CHECKPOINT_DIR, manifest.format)
    if list(predictor.classes) != manifest.classes:
        raise ArtifactError(
            f"{folder}: the model's classes {list(predictor.classes)} differ from "
            f"model.json's {manifest.classes}"
        )
    return manifest, predictor


def predict_labels(predictor: Predictor, inputs: Sequence[Any]) -> tuple[list[str], np.ndarray]:
    """Predicted class names and the probability matrix for ``inputs``."""
    probabilities = np.asarray(predictor.predict_proba(list(inputs)), dtype=np.float64)
    labels = [predictor.classes[int(i)] for i in probabilities.argmax(axis=1)]
    return labels, probabilities
