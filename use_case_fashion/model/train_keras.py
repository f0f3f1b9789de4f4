"""fashion-mnist: the Keras training script of this project (image classification).

Determined 0.38's Keras path: the Core API (``det.core.init``) with
``determined.keras.DeterminedCallback`` in ``model.fit``. Off-cluster, ``cdl model train``
calls :func:`train` with its own core context (checkpoints, metrics and TensorBoard logs under
``.cdl/``); on a cluster the experiment's entrypoint runs ``python3 -m model.train_keras``:
:func:`main` below.

Inputs come from the data store at the version named in the experiment config's ``data``
section; preprocessing is ``cdl_gitlab.features`` and the network is built by
``cdl_gitlab.model.networks_keras`` from the hyperparameters, so a checkpoint is self-contained.
"""

from __future__ import annotations

import logging
from typing import Any

import determined as det
import tensorflow as tf
from cdl_gitlab.model.expconf import TrainLength, training_length
from cdl_gitlab.model.inputs import load_training_inputs
from cdl_gitlab.model.keras_support import (
    CheckpointingCallback,
    dataset,
    fit_schedule,
    report_period,
)
from cdl_gitlab.model.networks_keras import build_network
from determined import core
from determined.keras import TensorBoard


def train(
    core_context: core.Context,
    hparams: dict[str, Any],
    data_config: dict[str, Any],
    length: TrainLength,
    *,
    strategy: tf.distribute.Strategy | None = None,
    checkpoint: str | None = None,
    continue_id: int | str = "local",
    seed: int = 42,
) -> tf.keras.Model:
    """Build, compile and fit the model for ``length`` with Determined tracking."""
    inputs = load_training_inputs(data_config, hparams)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_network(inputs.task, inputs.input_shape, inputs.n_classes, hparams)
        model.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate=float(hparams["learning_rate"])),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    batch_size = int(hparams["global_batch_size"])
    epochs, steps_per_epoch = fit_schedule(length, len(inputs.x_train), batch_size)
    callbacks = [
        CheckpointingCallback(
            core_context,
            inputs,
            hparams,
            checkpoint=checkpoint,
            continue_id=continue_id,
            train_metrics_report_period=report_period(steps_per_epoch),
        ),
        TensorBoard(core_context, update_freq="epoch", profile_batch=0),
    ]
    model.fit(
        dataset(inputs.x_train, inputs.y_train, batch_size, seed, train=True),
        validation_data=dataset(inputs.x_val, inputs.y_val, batch_size, seed, train=False),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=0,
    )
    return model


def main() -> None:
    """The experiment's entrypoint: train with the Core API on the cluster."""
    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    info = det.get_cluster_info()
    if info is None or info.task_type != "TRIAL":
        # Off-cluster: the same run as `cdl model train` (local profile).
        from cdl_gitlab.cli.scripts import train_from_cli

        train_from_cli()
        return
    hparams = info.trial.hparams
    distributed, strategy = core.DistributedContext.from_tf_config()
    with det.core.init(distributed=distributed) as core_context:
        train(
            core_context,
            hparams,
            info.user_data,
            training_length(hparams),
            strategy=strategy,
            checkpoint=info.latest_checkpoint,
            continue_id=info.trial.trial_id,
            seed=info.trial.trial_seed,
        )


if __name__ == "__main__":
    main()
