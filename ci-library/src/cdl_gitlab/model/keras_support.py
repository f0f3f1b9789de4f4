"""Keras (TF 2.15, Keras 2) plumbing for the Core API script: checkpoint extras, data, lengths."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from determined import core
from determined.keras import DeterminedCallback

from cdl_gitlab.model.checkpoint import ModelSpec, write_model_files
from cdl_gitlab.model.expconf import TrainLength
from cdl_gitlab.model.inputs import TrainingInputs


class CheckpointingCallback(DeterminedCallback):
    """``DeterminedCallback`` that also writes the serving files into each checkpoint and
    reports validation metrics as ``validation_<name>`` (the searcher metric names of both
    frameworks' configs)."""

    def __init__(
        self,
        core_context: core.Context,
        inputs: TrainingInputs,
        hparams: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(core_context, **kwargs)
        self.spec = ModelSpec(
            framework="keras",
            task=inputs.task,
            input_shape=list(inputs.input_shape),
            classes=inputs.features.classes,
            hparams=dict(hparams),
            data=inputs.data_version,
        )
        self.features = inputs.features

    def on_test_end(self, logs: dict[str, Any] | None) -> None:
        renamed = {
            key if key.startswith("validation_") else f"validation_{key}": value
            for key, value in (logs or {}).items()
        }
        super().on_test_end(renamed)

    def save_model(
        self, model: tf.keras.Model, path: str, distributed: core.DistributedContext
    ) -> None:
        super().save_model(model, path, distributed)
        if distributed.rank == 0:
            write_model_files(Path(path).parent, self.spec, self.features)


def fit_schedule(length: TrainLength, n_train: int, batch_size: int) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` for ``model.fit`` on a repeated dataset.

    A length in batches is rounded up to whole (possibly shortened) epochs.
    """
    per_epoch = max(1, math.ceil(n_train / batch_size))
    if length.unit == "epochs":
        return length.value, per_epoch
    steps = min(per_epoch, length.value)
    return math.ceil(length.value / steps), steps


def report_period(steps_per_epoch: int) -> int:
    """Batches between training-metric reports: every 20 batches, at least once an epoch."""
    return max(1, min(20, steps_per_epoch))


def dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, train: bool
) -> tf.data.Dataset:
    """A batched dataset; shuffled and repeated for training."""
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if train:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    return data.batch(batch_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
