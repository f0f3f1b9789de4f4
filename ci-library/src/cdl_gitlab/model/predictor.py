"""Inference from a self-contained checkpoint folder, for both frameworks and tasks.

Serving (the Seldon wrapper), the evaluation gate and compression all load models here::

    predictor = load_predictor(checkpoint_dir)
    predictor.predict(["some text"])  # [{"label": ..., "probabilities": {class: p, ...}}]
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer
from cdl_gitlab.model.checkpoint import ModelSpec, read_spec


def serving_threads() -> int:
    """PyTorch's intra-op threads in a model-server process: ``$OMP_NUM_THREADS``, else 1.

    One request is too small to split across cores: intra-op threads only spin, take CPU from
    the other server processes, and wait for a core whenever another process holds one (a
    parallel region per layer, milliseconds each on a busy machine)."""
    return int(os.environ.get("OMP_NUM_THREADS") or 1)


@contextlib.contextmanager
def threads_as_served() -> Iterator[None]:
    """PyTorch on :func:`serving_threads` inside the block (the caller's threads after), so
    that a measurement in a job sees the model as the server runs it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(serving_threads())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _builder(spec: ModelSpec) -> Callable[..., Any]:
    module_name, _, attribute = spec.builder.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Predictor:
    """Raw inputs (texts, PNG bytes, pixel arrays) -> class probabilities."""

    def __init__(self, spec: ModelSpec, features: FeatureState, model: Any, batch_size: int = 256):
        self.spec = spec
        self.features = features
        self.model = model
        self.batch_size = batch_size
        self._fast_forward: Callable[[np.ndarray], np.ndarray] | None = None
        if list(features.classes) != list(spec.classes):
            raise ValueError("checkpoint's feature state and model spec disagree on the classes")

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def framework(self) -> str:
        return self.spec.framework

    def use_fast_forward(self) -> bool:
        """Run a PyTorch model through :func:`~cdl_gitlab.model.fast_inference.fast_forward`
        from now on (the model servers call this once at load); False if it does not apply."""
        if self.spec.framework != "pytorch":
            return False
        from cdl_gitlab.model.fast_inference import fast_forward

        self._fast_forward = fast_forward(
            self.model, self.spec.input_shape, sparse_input=self.spec.task == "text"
        )
        return self._fast_forward is not None

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        if self._fast_forward is not None:
            return self._fast_forward(batch)
        if self.spec.framework == "pytorch":
            import torch

            with torch.inference_mode():
                return self.model(torch.from_numpy(batch)).float().numpy()
        return np.asarray(self.model(batch, training=False))

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """``(len(inputs), n_classes)`` probabilities; raises ValueError on unusable inputs."""
        if isinstance(inputs, str | bytes):
            raise ValueError("predict_proba expects a list of inputs, not a single input")
        return self._batched(inputs, self.features.inputs)

    def predict_proba_stems(self, stem_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Like :meth:`predict_proba` for a text model, on texts already turned into stems
        (:func:`cdl_gitlab.features.text.stems`), so a caller that needs them too (the model
        servers' input statistics) tokenises each text once."""
        transform = self.features.transform
        if not isinstance(transform, TextVectorizer):
            raise ValueError("predict_proba_stems needs a text model")
        return self._batched(stem_lists, transform.transform_stems)

    def _batched(
        self, inputs: Sequence[Any], featurize: Callable[[list[Any]], np.ndarray]
    ) -> np.ndarray:
        if len(inputs) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            batch = featurize(list(inputs[start : start + self.batch_size]))
            outputs.append(softmax(self._logits(batch).astype(np.float64)))
        return np.concatenate(outputs).astype(np.float32)

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """One ``{"label", "probabilities": {class: p}}`` per input."""
        probabilities = self.predict_proba(inputs)
        return [
            {
                "label": self.classes[int(row.argmax())],
                "probabilities": {
                    name: float(p) for name, p in zip(self.classes, row, strict=True)
                },
            }
            for row in probabilities
        ]


def _load_torch(folder: Path, spec: ModelSpec) -> Any:
    import torch

    network = _builder(spec)(spec.task, spec.input_shape, len(spec.classes), spec.hparams)
    state = torch.load(folder / spec.weights, map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    return network.eval()


def _load_keras(folder: Path, spec: ModelSpec) -> Any:
    model = _builder(spec)(spec.task, spec.input_shape, len(spec.classes), spec.hparams)
    model.load_weights(str(folder / spec.weights)).expect_partial()
    return model


def load_predictor(checkpoint_dir: str | Path) -> Predictor:
    """The predictor of a checkpoint (or registered version) folder."""
    folder = Path(checkpoint_dir)
    spec = read_spec(folder)
    features = FeatureState.load(folder)
    model = _load_torch(folder, spec) if spec.framework == "pytorch" else _load_keras(folder, spec)
    return Predictor(spec, features, model)
