"""TF-Keras (Keras 2) networks for the two tasks, built from hyperparameters.

The same builder serves training (the rendered Keras script) and serving
(:mod:`cdl_gitlab.model.predictor`), so saved weights always fit the rebuilt model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tensorflow import keras

from cdl_gitlab.model.defaults import DEFAULT_TEXT_WIDTHS, TEXT_WIDTHS


def text_baseline(input_dim: int, n_classes: int, hparams: dict[str, Any]) -> keras.Model:
    """The paper's baseline: five dense layers, each hidden one with layer norm and dropout."""
    dropout = float(hparams.get("dropout", 0.2))
    inputs = keras.Input(shape=(input_dim,), name="counts")
    x = inputs
    for key, default in zip(TEXT_WIDTHS, DEFAULT_TEXT_WIDTHS, strict=True):
        x = keras.layers.Dense(int(hparams.get(key, default)))(x)
        x = keras.layers.LayerNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="text_baseline")


def image_model(shape: Sequence[int], n_classes: int, hparams: dict[str, Any]) -> keras.Model:
    """``arch: mlp`` (flatten, dense ``hidden``) or ``arch: cnn`` (two conv blocks first)."""
    height, width = (int(v) for v in shape)
    arch = hparams.get("arch", "mlp")
    hidden = int(hparams.get("hidden", 128))
    dropout = float(hparams.get("dropout", 0.2))
    inputs = keras.Input(shape=(height, width), name="pixels")
    if arch == "mlp":
        x = keras.layers.Flatten()(inputs)
    elif arch == "cnn":
        x = keras.layers.Reshape((height, width, 1))(inputs)
        for key, default in (("filters1", 16), ("filters2", 32)):
            filters = int(hparams.get(key, default))
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
    else:
        raise ValueError(f"hyperparameters.arch: unknown image architecture {arch!r} (mlp, cnn)")
    x = keras.layers.Dense(hidden, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"image_{arch}")


def build_network(
    task: str, input_shape: Sequence[int], n_classes: int, hparams: dict[str, Any]
) -> keras.Model:
    """The (uncompiled) model for ``task``; outputs are logits."""
    if task == "text":
        return text_baseline(int(input_shape[0]), n_classes, hparams)
    if task == "image":
        return image_model(input_shape, n_classes, hparams)
    raise ValueError(f"unknown task {task!r} (text, image)")
