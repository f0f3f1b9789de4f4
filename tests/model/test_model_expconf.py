"""Experiment configs: constants, training length, entrypoints, and the Optuna mapping of the
Determined search space and adaptive ASHA."""

from __future__ import annotations

import optuna
import pytest

from cdl_gitlab.model.expconf import (
    ExperimentConfigError,
    TrainLength,
    const_hparams,
    data_ref,
    entry_module,
    searcher_length,
    training_length,
)
from cdl_gitlab.model.search import best_config, pruner_settings, suggest

SPACE = {
    "global_batch_size": 32,
    "fixed": {"type": "const", "val": 7},
    "units": {"type": "int", "minval": 8, "maxval": 64},
    "dropout": {"type": "double", "minval": 0.1, "maxval": 0.5},
    "learning_rate": {"type": "log", "base": 10, "minval": -4.0, "maxval": -2.0},
    "arch": {"type": "categorical", "vals": ["mlp", "cnn", [1, 2]]},
    "optimizer": {"name": "adam", "beta": {"type": "double", "minval": 0.8, "maxval": 0.99}},
}


def test_const_hparams_resolves_consts_and_rejects_search_spaces() -> None:
    conf = {"hyperparameters": {"a": 1, "b": {"type": "const", "val": 2}, "n": {"x": 3}}}
    assert const_hparams(conf) == {"a": 1, "b": 2, "n": {"x": 3}}
    with pytest.raises(ExperimentConfigError, match=r"hyperparameters\.units: a 'int' search"):
        const_hparams({"hyperparameters": SPACE})


def test_training_length() -> None:
    assert training_length({"epochs": 3}) == TrainLength("epochs", 3)
    assert training_length({"batches": 40}) == TrainLength("batches", 40)
    assert training_length({"epochs": 3}, max_steps=5) == TrainLength("batches", 5)
    with pytest.raises(ExperimentConfigError, match="training length"):
        training_length({})
    conf = {"searcher": {"name": "adaptive_asha", "time_metric": "batches", "max_time": 450}}
    assert searcher_length(conf) == TrainLength("batches", 450)
    assert searcher_length({"searcher": {"name": "single"}}) is None
    with pytest.raises(ExperimentConfigError, match="time_metric"):
        searcher_length({"searcher": {"max_time": 3, "time_metric": "records"}})


def test_entry_module_and_data_ref() -> None:
    assert entry_module({"entrypoint": "python3 -m model.model_def"}) == "model.model_def"
    launched = "python3 -m determined.launch.torch_distributed python3 -m model.model_def"
    assert entry_module({"entrypoint": launched}) == "model.model_def"
    tf = "python3 -m determined.launch.tensorflow -- python3 model/train_keras.py"
    assert entry_module({"entrypoint": tf}) == "model.train_keras"
    with pytest.raises(ExperimentConfigError, match="entrypoint"):
        entry_module({})
    assert data_ref({"train": {"repo": "r", "ref": "abc"}}) == "abc"
    assert data_ref({"train": {"repo": "r", "ref": ""}}) is None
    assert data_ref(None) is None


def test_suggest_maps_every_determined_type() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        values = suggest(study.ask(), SPACE)
        assert values["global_batch_size"] == 32 and values["fixed"] == 7
        assert 8 <= values["units"] <= 64 and isinstance(values["units"], int)
        assert 0.1 <= values["dropout"] <= 0.5
        assert 1e-4 <= values["learning_rate"] <= 1e-2
        assert values["arch"] in ("mlp", "cnn", [1, 2])
        assert values["optimizer"]["name"] == "adam"
        assert 0.8 <= values["optimizer"]["beta"] <= 0.99
    params = {"units": 9, "dropout": 0.2, "learning_rate": -3.0, "arch": 2, "optimizer.beta": 0.9}
    fixed = suggest(optuna.trial.FixedTrial(params), SPACE)
    assert fixed["learning_rate"] == pytest.approx(1e-3) and fixed["arch"] == [1, 2]
    assert fixed["optimizer"] == {"name": "adam", "beta": 0.9}
    with pytest.raises(ExperimentConfigError, match="unknown type"):
        suggest(study.ask(), {"x": {"type": "gaussian"}})


def test_adaptive_asha_maps_to_successive_halving() -> None:
    searcher = {"divisor": 4, "max_rungs": 3, "mode": "aggressive"}
    sha = pruner_settings(searcher, TrainLength("batches", 1600))
    assert (sha.min_resource, sha.reduction_factor, sha.min_early_stopping_rate) == (100, 4, 0)
    standard = pruner_settings({"divisor": 2, "max_rungs": 5}, TrainLength("batches", 8))
    assert (standard.min_resource, standard.min_early_stopping_rate) == (1, 1)
    with pytest.raises(ExperimentConfigError, match="mode"):
        pruner_settings({"mode": "wild"}, TrainLength("batches", 8))


def test_best_config_is_a_single_trial_config() -> None:
    conf = {
        "name": "news-adaptive",
        "entrypoint": "python3 -m model.model_def",
        "hyperparameters": SPACE,
        "searcher": {
            "name": "adaptive_asha",
            "metric": "validation_accuracy",
            "smaller_is_better": False,
            "max_trials": 16,
            "max_time": 10,
            "time_metric": "batches",
        },
    }
    best = best_config(conf, {"units": 9, "batches": 10})
    assert best["searcher"] == {
        "name": "single",
        "metric": "validation_accuracy",
        "smaller_is_better": False,
    }
    assert best["name"] == "news-adaptive-best" and const_hparams(best) == {
        "units": 9,
        "batches": 10,
    }
