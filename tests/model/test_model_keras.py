"""Keras (Core API + DeterminedCallback) image model end to end on generated PNGs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from model_fixtures import image_array, make_project, png_bytes

from cdl_gitlab.model.evaluate import evaluate_version
from cdl_gitlab.model.predictor import load_predictor
from cdl_gitlab.model.train import train_local
from cdl_gitlab.tracking import open_experiment_registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    for name in ("CDL_PROFILE", "CDL_CONFIG", "CDL_MODEL_VERSION"):
        os.environ.pop(name, None)
    settings = make_project(tmp_path_factory.mktemp("keras-image") / "p", "keras", "image")
    return settings, train_local(settings, settings.path("model/const.yaml"))


def test_keras_training_is_recorded_and_registered(trained) -> None:
    settings, result = trained
    (trial,) = open_experiment_registry(settings).get_experiment(result.experiment_id).trials
    validations = trial.metrics["validation"]
    assert [r.steps_completed for r in validations] == [6, 12, 18]
    assert {"validation_loss", "validation_accuracy", "epochs"} <= set(validations[-1].metrics)
    assert len(trial.checkpoints) == 3  # DeterminedCallback checkpoints every epoch
    assert (result.checkpoint_path / "model_checkpoint.index").is_file()
    assert (result.checkpoint_path / "features" / "transform.json").is_file()
    assert list(result.tensorboard.rglob("events.out.tfevents.*"))
    assert result.version is not None
    assert result.version.metadata["framework"] == "keras"
    assert result.version.metadata["hparams"]["arch"] == "cnn"


def test_keras_predictor_takes_png_bytes_and_arrays(trained) -> None:
    _, result = trained
    predictor = load_predictor(result.version.path)
    rng = np.random.default_rng(7)
    images = [image_array(label, rng) for label in ("bars", "stripes", "dots")]
    from_png = predictor.predict_proba([png_bytes(image) for image in images])
    from_arrays = predictor.predict_proba([image.tolist() for image in images])
    assert np.allclose(from_png, from_arrays, atol=1e-5)
    labels = [p["label"] for p in predictor.predict(images)]
    assert labels == ["bars", "stripes", "dots"]
    with pytest.raises(ValueError, match="28x28"):
        predictor.predict([[1, 2, 3]])


def test_keras_version_passes_the_gate(trained) -> None:
    settings, _ = trained
    result = evaluate_version(settings)
    assert result.passed, result.message
    assert result.classes == ["bars", "stripes", "dots"]
    assert set(result.per_class) == {"bars", "stripes", "dots"}
