"""A faster CPU forward pass of a PyTorch model for serving, with the eager model's numbers.

A model server spends most of a request in two places that do no useful work for one item:

- a text model's input is a vector of stem counts over the vocabulary, almost all zeros; when
  the network starts with a ``Linear`` layer, that layer is computed from the non-zero counts
  only (``embedding_bag`` over the rows of its transposed weight) instead of reading the
  whole weight matrix for every request;
- the layers after it are run as a TorchScript trace, without a Python call per layer.

:func:`fast_forward` builds that pass and checks it against the eager model on sample inputs
(several batch sizes); if it cannot be built or its outputs differ, the caller keeps the
eager model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Forward = Callable[[np.ndarray], np.ndarray]

TOLERANCE = 1e-5
"""Largest difference allowed between the fast and the eager logits (float32 sums in another
order differ in the last bits)."""


def fast_forward(model: Any, input_shape: Sequence[int], sparse_input: bool) -> Forward | None:
    """``logits = forward(batch)`` equal to ``model(batch)`` within :data:`TOLERANCE`, or
    ``None`` when no faster pass applies or it disagrees with the model."""
    import torch

    try:
        forward = _build(model, tuple(input_shape), sparse_input)
        if forward is None:
            return None
        for batch in _samples(tuple(input_shape), sparse_input):
            with torch.inference_mode():
                expected = model(torch.from_numpy(batch)).float().numpy()
            if not np.allclose(forward(batch), expected, atol=TOLERANCE, rtol=TOLERANCE):
                log.warning("the fast forward pass differs from the model: serving it eagerly")
                return None
    except Exception as exc:  # tracing refuses some models: they are served eagerly
        log.info("no fast forward pass (%s: %s): served eagerly", type(exc).__name__, exc)
        return None
    return forward


def _build(model: Any, input_shape: tuple[int, ...], sparse_input: bool) -> Forward | None:
    import torch

    with torch.inference_mode():
        first = model[0] if isinstance(model, torch.nn.Sequential) and len(model) > 1 else None
        if sparse_input and isinstance(first, torch.nn.Linear) and len(input_shape) == 1:
            weight_rows = first.weight.detach().t().contiguous()
            bias = first.bias.detach().clone() if first.bias is not None else None
            rest = _trace(model[1:], torch.zeros((2, first.out_features)))
            return _sparse_first_layer(weight_rows, bias, rest)
        traced = _trace(model, torch.zeros((2, *input_shape)))

    def dense(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return traced(torch.from_numpy(batch)).float().numpy()

    return dense


def _trace(module: Any, example: Any) -> Any:
    import torch

    with warnings.catch_warnings():  # a trace that generalises badly is caught by the check
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False))


def _sparse_first_layer(weight_rows: Any, bias: Any, rest: Any) -> Forward:
    import torch

    def forward(batch: np.ndarray) -> np.ndarray:
        rows, columns = np.nonzero(batch)  # row-major: each row's columns are contiguous
        offsets = np.searchsorted(rows, np.arange(batch.shape[0]))
        with torch.inference_mode():
            hidden = torch.nn.functional.embedding_bag(
                torch.from_numpy(columns),
                weight_rows,
                torch.from_numpy(offsets),
                mode="sum",
                per_sample_weights=torch.from_numpy(batch[rows, columns]),
            )
            if bias is not None:
                hidden += bias
            return rest(hidden).float().numpy()

    return forward


def _samples(input_shape: tuple[int, ...], sparse_input: bool) -> list[np.ndarray]:
    """Inputs to compare the passes on: batches of 1, 3 and 17, and an all-zero item."""
    generator = np.random.default_rng(0)
    samples = []
    for size in (1, 3, 17):
        batch = generator.random((size, *input_shape), dtype=np.float32)
        if sparse_input:
            batch = np.where(batch > 0.97, np.floor(batch * 40), 0.0).astype(np.float32)
        samples.append(batch)
    samples.append(np.zeros((1, *input_shape), dtype=np.float32))
    return samples
