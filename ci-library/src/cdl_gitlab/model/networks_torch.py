"""PyTorch networks for the two tasks, built from hyperparameters.

Training (the rendered trial) and serving (:mod:`cdl_gitlab.model.predictor`) build the network
with the same function, so a checkpoint's weights always fit the module that loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from cdl_gitlab.model.defaults import DEFAULT_TEXT_WIDTHS, TEXT_WIDTHS


def text_baseline(input_dim: int, n_classes: int, hparams: dict[str, Any]) -> nn.Module:
    """The paper's baseline: five linear layers, each hidden one with layer norm and dropout."""
    pairs = zip(TEXT_WIDTHS, DEFAULT_TEXT_WIDTHS, strict=True)
    widths = [int(hparams.get(key, default)) for key, default in pairs]
    dropout = float(hparams.get("dropout", 0.2))
    layers: list[nn.Module] = []
    previous = input_dim
    for width in widths:
        layers += [nn.Linear(previous, width), nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout)]
        previous = width
    layers.append(nn.Linear(previous, n_classes))
    return nn.Sequential(*layers)


def image_mlp(shape: Sequence[int], n_classes: int, hparams: dict[str, Any]) -> nn.Module:
    """Flatten, one dense hidden layer of ``hidden`` units, dense classes."""
    height, width = shape
    hidden = int(hparams.get("hidden", 128))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(height * width, hidden),
        nn.ReLU(),
        nn.Dropout(float(hparams.get("dropout", 0.2))),
        nn.Linear(hidden, n_classes),
    )


def image_cnn(shape: Sequence[int], n_classes: int, hparams: dict[str, Any]) -> nn.Module:
    """Two conv/ReLU/max-pool blocks (``filters1``, ``filters2``), a dense layer, dense classes."""
    height, width = shape
    filters1 = int(hparams.get("filters1", 16))
    filters2 = int(hparams.get("filters2", 32))
    hidden = int(hparams.get("hidden", 128))
    flat = filters2 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Unflatten(1, (1, height)),
        nn.Conv2d(1, filters1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(filters1, filters2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Dropout(float(hparams.get("dropout", 0.2))),
        nn.Linear(hidden, n_classes),
    )


def build_network(
    task: str, input_shape: Sequence[int], n_classes: int, hparams: dict[str, Any]
) -> nn.Module:
    """The network for ``task`` (text: baseline; image: ``hparams['arch']`` mlp or cnn)."""
    if task == "text":
        return text_baseline(int(input_shape[0]), n_classes, hparams)
    if task == "image":
        arch = hparams.get("arch", "mlp")
        if arch == "mlp":
            return image_mlp(input_shape, n_classes, hparams)
        if arch == "cnn":
            return image_cnn(input_shape, n_classes, hparams)
        raise ValueError(f"hyperparameters.arch: unknown image architecture {arch!r} (mlp, cnn)")
    raise ValueError(f"unknown task {task!r} (text, image)")
