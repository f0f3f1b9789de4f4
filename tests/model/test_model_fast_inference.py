"""The serving forward pass (sparse first layer, traced network) against the eager model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer, stems
from cdl_gitlab.model.checkpoint import ModelSpec
from cdl_gitlab.model.fast_inference import fast_forward
from cdl_gitlab.model.networks_torch import build_network
from cdl_gitlab.model.predictor import Predictor

TEXTS = [
    "Markets fell as the central bank raised rates again",
    "The striker scored twice in the final minutes of the match",
    "A new phone with a faster chip and a larger screen",
    "Parliament voted on the budget after a long debate",
    "",
]
CLASSES = ["business", "sport", "tech"]


def _eager(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def _trained_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Random non-zero biases and norms, so no layer is the identity by chance."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.parametrize("hparams", [{"dropout": 0.0}, {"hidden1": 16, "dropout": 0.3}])
def test_text_baseline_sparse_pass_equals_the_model(hparams: dict) -> None:
    vectorizer = TextVectorizer.fit(TEXTS * 3)
    model = _trained_weights(build_network("text", [vectorizer.size], len(CLASSES), hparams))
    forward = fast_forward(model, [vectorizer.size], sparse_input=True)
    assert forward is not None
    batch = vectorizer.transform([*TEXTS, "words outside the vocabulary only: zyx qwv"])
    assert (batch == 0).mean() > 0.5  # mostly zeros: the case the sparse layer is for
    fast = forward(batch)
    assert fast.shape == (len(TEXTS) + 1, len(CLASSES))
    np.testing.assert_allclose(fast, _eager(model, batch), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(forward(batch[:1]), _eager(model, batch[:1]), atol=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_image_networks_are_traced_and_equal_the_model(arch: str) -> None:
    model = _trained_weights(build_network("image", [28, 28], 4, {"arch": arch, "hidden": 16}))
    forward = fast_forward(model, [28, 28], sparse_input=False)
    assert forward is not None
    batch = np.random.default_rng(3).random((5, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(forward(batch), _eager(model, batch), atol=1e-5, rtol=1e-5)


class _BranchOnInput(torch.nn.Module):
    """Data-dependent control flow: a trace records one branch only."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.sum()) > 0:
            return self.linear(x)
        return -self.linear(x) + 5.0


def test_a_pass_that_differs_from_the_model_is_refused() -> None:
    assert fast_forward(_BranchOnInput().eval(), [8], sparse_input=False) is None


def test_a_model_that_cannot_be_traced_is_served_eagerly() -> None:
    class _ReturnsDict(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict:
            return {"logits": x.sum(dim=1, keepdim=True)}

    assert fast_forward(_ReturnsDict().eval(), [4], sparse_input=False) is None


def test_predictor_serves_the_same_probabilities_with_the_fast_pass() -> None:
    vectorizer = TextVectorizer.fit(TEXTS * 3)
    spec = ModelSpec(
        framework="pytorch",
        task="text",
        input_shape=[vectorizer.size],
        classes=CLASSES,
        builder="cdl_gitlab.model.networks_torch:build_network",
        hparams={"dropout": 0.0},
        weights="model.pt",
    )
    model = _trained_weights(build_network("text", [vectorizer.size], len(CLASSES), {}))
    predictor = Predictor(spec, FeatureState(vectorizer, LabelEncoder(CLASSES)), model)
    eager = predictor.predict_proba(TEXTS)
    assert predictor.use_fast_forward()
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), eager, atol=1e-6)
    stem_lists = [stems(text) for text in TEXTS]
    np.testing.assert_allclose(predictor.predict_proba_stems(stem_lists), eager, atol=1e-6)
