"""``cdl deploy compress``: quantize a registered version, compare it, gate it, register it.

- PyTorch: dynamic int8 quantization of the ``Linear`` layers (``torch.ao.quantization``);
  the checkpoint keeps the quantized state dict in ``model_int8.pt``.
- Keras: TFLite post-training dynamic-range quantization; ``model.tflite``.

A compressed checkpoint is the source checkpoint's ``cdl_model.json`` and ``features/`` plus
the quantized file and ``cdl_compressed.json`` (format, file, source version); the float
weights are left out, so nothing can load the uncompressed model from it by mistake. Both
load as :class:`cdl_gitlab.model.predictor.Predictor` (shared preprocessing and softmax).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdl_gitlab.errors import CDLError
from cdl_gitlab.features.state import FEATURES_DIR, FeatureState
from cdl_gitlab.fsutil import atomic_write_bytes, atomic_write_json
from cdl_gitlab.model.checkpoint import SPEC_FILE, ModelSpec, read_spec
from cdl_gitlab.model.predictor import Predictor, load_predictor, threads_as_served

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

COMPRESSED_FILE = "cdl_compressed.json"
TORCH_FILE = "model_int8.pt"
TFLITE_FILE = "model.tflite"
FORMAT_OF = {"pytorch": "torch-int8", "keras": "tflite"}


class CompressionError(CDLError):
    """Compression cannot run (missing test data, already compressed, unknown format)."""


class CompressionRejected(CDLError):
    """The compressed model lost more accuracy than ``max_accuracy_drop`` allows."""

    exit_code = 3

    def __init__(self, message: str, comparison: dict[str, Any]) -> None:
        super().__init__(message)
        self.comparison = comparison


def _build(spec: ModelSpec) -> Any:
    import importlib

    module_name, _, attribute = spec.builder.partition(":")
    builder = getattr(importlib.import_module(module_name), attribute)
    return builder(spec.task, spec.input_shape, len(spec.classes), spec.hparams)


def _quantize_torch(network: Any) -> Any:
    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(network.eval(), {nn.Linear}, torch.qint8)


def write_torch_int8(predictor: Predictor, dest: Path) -> Path:
    import torch

    quantized = _quantize_torch(predictor.model)
    path = dest / TORCH_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(quantized.state_dict(), path)
    return path


def write_tflite(predictor: Predictor, dest: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(predictor.model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return atomic_write_bytes(dest / TFLITE_FILE, converter.convert())


class TFLiteModel:
    """A TFLite interpreter called like a Keras model: ``model(batch, training=False)``.

    An interpreter is not thread-safe; calls are serialised (the server runs threads).
    """

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=1)
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray, training: bool = False) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            if batch.shape[0] != self._batch:
                self.interpreter.resize_tensor_input(self._input, list(batch.shape))
                self.interpreter.allocate_tensors()
                self._batch = batch.shape[0]
            self.interpreter.set_tensor(self._input, batch)
            self.interpreter.invoke()
            return np.array(self.interpreter.get_tensor(self._output))


def _compressed_info(folder: Path, expected: str) -> dict[str, Any]:
    path = Path(folder) / COMPRESSED_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompressionError(
            f"{folder} is not a compressed checkpoint (no {COMPRESSED_FILE})"
        ) from None
    if info.get("format") != expected:
        raise CompressionError(f"{path}: format {info.get('format')!r}, expected {expected!r}")
    return info


class TorchInt8Predictor:
    """Loads a ``torch-int8`` checkpoint as a :class:`Predictor`."""

    @staticmethod
    def load(folder: Path) -> Predictor:
        import torch

        info = _compressed_info(folder, "torch-int8")
        spec = read_spec(folder)
        quantized = _quantize_torch(_build(spec))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(Path(folder) / info["file"], map_location="cpu", weights_only=True)
            quantized.load_state_dict(state)
        return Predictor(spec, FeatureState.load(folder), quantized.eval())


class TFLitePredictor:
    """Loads a ``tflite`` checkpoint as a :class:`Predictor` (Keras path, TFLite model)."""

    @staticmethod
    def load(folder: Path) -> Predictor:
        info = _compressed_info(folder, "tflite")
        spec = read_spec(folder)
        return Predictor(spec, FeatureState.load(folder), TFLiteModel(Path(folder) / info["file"]))


def compress_checkpoint(source: Path, dest: Path, source_version: int) -> tuple[str, Path]:
    """Write the compressed checkpoint of ``source`` into the empty folder ``dest``."""
    spec = read_spec(source)
    fmt = FORMAT_OF[spec.framework]
    predictor = load_predictor(source)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / SPEC_FILE, dest / SPEC_FILE)
    shutil.copytree(source / FEATURES_DIR, dest / FEATURES_DIR)
    writer = write_torch_int8 if fmt == "torch-int8" else write_tflite
    model_file = writer(predictor, dest)
    atomic_write_json(
        dest / COMPRESSED_FILE,
        {"format": fmt, "file": model_file.name, "source_version": source_version},
    )
    return fmt, model_file


def weights_size(folder: Path, spec: ModelSpec) -> int:
    """Bytes of the float weights (``model_state.pt``, or Keras' ``model_checkpoint*`` files)."""
    return sum(p.stat().st_size for p in Path(folder).glob(f"{spec.weights}*") if p.is_file())


def accuracy(predictor: Any, inputs: Sequence[Any], labels: Sequence[str]) -> float:
    probabilities = predictor.predict_proba(list(inputs))
    predicted = [predictor.classes[int(i)] for i in probabilities.argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def latency_ms(predictor: Any, inputs: Sequence[Any], runs: int) -> dict[str, float]:
    """p50/p99 of single-item ``predict_proba`` over ``runs`` calls (after two warm-ups), a
    PyTorch model on the threads a model server gives it (:func:`threads_as_served`)."""
    items = [inputs[i % len(inputs)] for i in range(runs)]
    served = threads_as_served() if predictor.framework == "pytorch" else contextlib.nullcontext()
    timings = []
    with served:
        for item in items[:2]:
            predictor.predict_proba([item])
        for item in items:
            started = time.perf_counter()
            predictor.predict_proba([item])
            timings.append((time.perf_counter() - started) * 1000.0)
    return {"p50": float(np.percentile(timings, 50)), "p99": float(np.percentile(timings, 99))}


@dataclass
class CompressionResult:
    comparison: dict[str, Any]
    version: int | None
    """The registered compressed version (None when the registry cannot store one)."""


def _record_gate_only(
    registry: Any, name: str, version: int, comparison: dict[str, Any]
) -> CompressionResult:
    """On a registry that cannot hold the compressed files (Determined's references only the
    checkpoints its trials stored), keep the passed comparison on the source version."""
    registry.add_metadata(name, version, {"compression_gate": comparison}, overwrite=True)
    log.warning(
        "%s v%s: the compressed model passed the gate, but this registry cannot store its files; "
        "the comparison is recorded on v%s (metadata compression_gate), which stays the version "
        "to deploy",
        name,
        version,
        version,
    )
    return CompressionResult(comparison, None)


def compare(
    original: Any,
    compressed: Any,
    inputs: Sequence[Any],
    labels: Sequence[str],
    *,
    original_bytes: int,
    compressed_bytes: int,
    runs: int,
    max_drop: float,
) -> dict[str, Any]:
    """Size, latency and accuracy of both models and whether the accuracy gate passes."""
    acc_original = accuracy(original, inputs, labels)
    acc_compressed = accuracy(compressed, inputs, labels)
    lat_original = latency_ms(original, inputs, runs)
    lat_compressed = latency_ms(compressed, inputs, runs)
    drop = acc_original - acc_compressed
    return {
        "size_bytes": {
            "original": original_bytes,
            "compressed": compressed_bytes,
            "ratio": compressed_bytes / original_bytes if original_bytes else None,
        },
        "latency_ms": {
            "original": lat_original,
            "compressed": lat_compressed,
            "ratio_p50": lat_compressed["p50"] / lat_original["p50"],
        },
        "accuracy": {
            "original": acc_original,
            "compressed": acc_compressed,
            "drop": drop,
            "max_drop": max_drop,
            "test_items": len(labels),
        },
        "passed": drop <= max_drop,
    }


def test_inputs(settings: Settings) -> tuple[list[Any], list[str], dict[str, Any]]:
    """The held-out test set: raw inputs, labels and the data version they came from."""
    from cdl_gitlab.data.dataset import load_split

    split = load_split(settings, "test")
    if not split.items:
        raise CompressionError("the test split is empty: run the data pipeline first")
    inputs = [content for _, _, content in split.items]
    labels = [label for _, label, _ in split.items]
    version = {key: str(value) for key, value in vars(split.version).items()}
    return inputs, labels, version


def compress_version(
    settings: Settings,
    version: int | None = None,
    *,
    registry: Any = None,
    max_drop: float | None = None,
    data: tuple[list[Any], list[str], dict[str, Any]] | None = None,
) -> CompressionResult:
    """Compress ``version`` (default: latest), compare, and register it if the gate passes.

    CompressionRejected (exit code 3) carries the comparison when accuracy drops too much.
    """
    from cdl_gitlab.registry import Checkpoint, open_registry

    registry = registry or open_registry(settings)
    config = settings.config.deployment.compression
    max_drop = config.max_accuracy_drop if max_drop is None else max_drop
    name = settings.config.model.name
    found = registry.get_version(name, version)
    if found.metadata.get("compression"):
        raise CompressionError(f"{name} v{found.version} is already a compressed version")
    inputs, labels, data_version = data or test_inputs(settings)
    with tempfile.TemporaryDirectory(prefix="cdl-compress-") as scratch:
        source = registry.download(name, found.version, Path(scratch) / "source")
        dest = Path(scratch) / "compressed"
        fmt, model_file = compress_checkpoint(source, dest, found.version)
        spec = read_spec(source)
        loader = TorchInt8Predictor if fmt == "torch-int8" else TFLitePredictor
        comparison = compare(
            load_predictor(source),
            loader.load(dest),
            inputs,
            labels,
            original_bytes=weights_size(source, spec),
            compressed_bytes=model_file.stat().st_size,
            runs=config.latency_runs,
            max_drop=max_drop,
        )
        comparison.update(
            {"format": fmt, "source_version": found.version, "test_data": data_version}
        )
        if not comparison["passed"]:
            raise CompressionRejected(
                f"{name} v{found.version} compressed ({fmt}) loses "
                f"{comparison['accuracy']['drop']:.4f} test accuracy, more than the allowed "
                f"{max_drop:.4f} (deployment.compression.max_accuracy_drop): not registered",
                comparison,
            )
        if not registry.stores_files:
            return _record_gate_only(registry, name, found.version, comparison)
        uuid = f"{found.checkpoint_uuid}-{fmt}"
        lineage = dict(found.metadata.get("lineage") or {})
        lineage["checkpoint"] = {
            **(lineage.get("checkpoint") or {}),
            "uuid": uuid,
            "compressed_from": {
                "model": name,
                "version": found.version,
                "uuid": found.checkpoint_uuid,
                "format": fmt,
            },
        }
        registered = registry.register_version(
            name, Checkpoint(uuid, dest), {"compression": comparison, "lineage": lineage}
        )
    log.info("registered %s v%s (%s of v%s)", name, registered.version, fmt, found.version)
    return CompressionResult(comparison, registered.version)
