"""PyTorch trial plumbing: checkpoint extras, Trainer periods, off-cluster runs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from determined import pytorch
from torch import nn

from cdl_gitlab.model.checkpoint import WEIGHTS, ModelSpec, write_model_files
from cdl_gitlab.model.expconf import TrainLength
from cdl_gitlab.model.inputs import TrainingInputs

REPORT_BATCHES = 20


class CheckpointFiles(pytorch.PyTorchCallback):
    """Writes the serving files (spec, feature state, plain weights) into every checkpoint."""

    def __init__(self, network: nn.Module, inputs: TrainingInputs, hparams: dict[str, Any]) -> None:
        self.network = network
        self.spec = ModelSpec(
            framework="pytorch",
            task=inputs.task,
            input_shape=list(inputs.input_shape),
            classes=inputs.features.classes,
            hparams=dict(hparams),
            data=inputs.data_version,
        )
        self.features = inputs.features

    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
        folder = Path(checkpoint_dir)
        write_model_files(folder, self.spec, self.features)
        module = getattr(self.network, "module", self.network)  # unwrap DistributedDataParallel
        torch.save(module.state_dict(), folder / WEIGHTS["pytorch"])


def train_unit(length: TrainLength) -> pytorch.TrainUnit:
    """A Determined ``Batch``/``Epoch`` for a :class:`TrainLength`."""
    return pytorch.Batch(length.value) if length.unit == "batches" else pytorch.Epoch(length.value)


def validation_period(hparams: dict[str, Any]) -> pytorch.TrainUnit:
    """Every ``validation_batches`` batches if that hyperparameter is set, else every epoch."""
    if hparams.get("validation_batches"):
        return pytorch.Batch(int(hparams["validation_batches"]))
    return pytorch.Epoch(1)


def reporting_period() -> pytorch.TrainUnit:
    """Training metrics every ``REPORT_BATCHES`` batches (and at every validation)."""
    return pytorch.Batch(REPORT_BATCHES)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
