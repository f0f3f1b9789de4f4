"""bbc-news: the Determined PyTorchTrial of this project (text classification).

Off-cluster, ``cdl model train`` runs this trial through the Determined ``Trainer``
(checkpoints, metrics and TensorBoard logs under ``.cdl/``). On a Determined cluster,
``cdl model train --profile cluster`` submits ``model/const.yaml`` whose entrypoint runs
``python3 -m model.model_def``: :func:`main` below.

Inputs come from the data store at the version named in the experiment config's ``data``
section; the preprocessing is ``cdl_gitlab.features`` (the same code serves predictions), and the
network is built by ``cdl_gitlab.model.networks_torch`` from the hyperparameters, so a checkpoint
is self-contained for serving.
"""

from __future__ import annotations

import logging
from typing import Any

import determined as det
import torch
from cdl_gitlab.model.expconf import training_length
from cdl_gitlab.model.inputs import load_training_inputs
from cdl_gitlab.model.networks_torch import build_network
from cdl_gitlab.model.torch_support import (
    CheckpointFiles,
    reporting_period,
    train_unit,
    validation_period,
)
from determined import pytorch
from torch import nn
from torch.utils.data import TensorDataset


class BbcNewsTrial(pytorch.PyTorchTrial):
    """Cross-entropy training of the text baseline (token counts, five linear layers)."""

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        self.context = context
        self.hparams = context.get_hparams()
        self.inputs = load_training_inputs(context.get_data_config(), self.hparams)
        self.network = build_network(
            self.inputs.task, self.inputs.input_shape, self.inputs.n_classes, self.hparams
        )
        self.model = context.wrap_model(self.network)
        self.optimizer = context.wrap_optimizer(
            torch.optim.Adam(self.model.parameters(), lr=float(self.hparams["learning_rate"]))
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def _loader(self, x: Any, y: Any, shuffle: bool) -> pytorch.DataLoader:
        data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return pytorch.DataLoader(
            data, batch_size=self.context.get_per_slot_batch_size(), shuffle=shuffle
        )

    def build_training_data_loader(self) -> pytorch.DataLoader:
        return self._loader(self.inputs.x_train, self.inputs.y_train, shuffle=True)

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        return self._loader(self.inputs.x_val, self.inputs.y_val, shuffle=False)

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.context.backward(loss)
        self.context.step_optimizer(self.optimizer)
        return {"loss": loss, "accuracy": (logits.argmax(dim=1) == y).float().mean()}

    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        x, y = batch
        logits = self.model(x)
        return {
            "validation_loss": self.loss_fn(logits, y),
            "validation_accuracy": (logits.argmax(dim=1) == y).float().mean(),
        }

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        # Writes the feature state, network spec and plain weights into every checkpoint.
        return {"cdl_checkpoint_files": CheckpointFiles(self.network, self.inputs, self.hparams)}


def main() -> None:
    """The experiment's entrypoint: train this trial with the Determined Trainer."""
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    info = det.get_cluster_info()
    if info is None or info.task_type != "TRIAL":
        # Off-cluster: the same run as `cdl model train` (local profile).
        from cdl_gitlab.cli.scripts import train_from_cli

        train_from_cli()
        return
    hparams = info.trial.hparams
    with pytorch.init(hparams=hparams) as context:
        trial = BbcNewsTrial(context)
        trainer = pytorch.Trainer(trial, context)
        trainer.fit(
            max_length=train_unit(training_length(hparams)),
            validation_period=validation_period(hparams),
            reporting_period=reporting_period(),
            latest_checkpoint=info.latest_checkpoint,
        )


if __name__ == "__main__":
    main()
