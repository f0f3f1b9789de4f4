"""PyTorch text model end to end on generated data, through the real Determined harness:
train off-cluster, register with lineage, predict from the checkpoint, evaluate, gate."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from model_fixtures import make_project, set_hparams, write_config

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.model.evaluate import evaluate_version
from cdl_gitlab.model.predictor import load_predictor
from cdl_gitlab.model.train import TrainResult, train_local
from cdl_gitlab.registry import open_registry
from cdl_gitlab.tracking import open_experiment_registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainResult]:
    for name in ("CDL_PROFILE", "CDL_CONFIG", "CDL_MODEL_VERSION"):
        os.environ.pop(name, None)
    settings = make_project(tmp_path_factory.mktemp("torch-text") / "p", "pytorch", "text")
    return settings, train_local(settings, settings.path("model/const.yaml"))


def test_training_records_experiment_checkpoint_and_version(trained) -> None:
    settings, result = trained
    experiment = open_experiment_registry(settings).get_experiment(result.experiment_id)
    assert experiment.state == "COMPLETED"
    (trial,) = experiment.trials
    assert trial.state == "COMPLETED" and trial.hparams["epochs"] == 3
    assert [r.steps_completed for r in trial.metrics["validation"]] == [6, 12, 18]
    assert "loss" in trial.metrics["training"][0].metrics
    assert trial.checkpoints[-1].uuid == result.checkpoint_uuid
    assert result.checkpoint_path.is_relative_to(settings.state_dir / "checkpoints")
    assert list(result.tensorboard.glob("events.out.tfevents.*"))
    assert result.validation["validation_accuracy"] >= 0.7

    version = result.version
    assert version is not None and version.version == 1
    assert version.metadata["metrics"]["validation"] == result.validation
    lineage = version.metadata["lineage"]
    assert lineage["checkpoint"] == {"uuid": result.checkpoint_uuid, "steps_completed": 18}
    assert lineage["data"]["train"]["repo"] == "tiny-text-train-validate"
    assert lineage["data"]["test"]["repo"] == "tiny-text-test-validate"
    assert lineage["experiment"]["id"] == result.experiment_id
    assert lineage["experiment"]["hparams"]["hidden1"] == 32
    assert lineage["cost"]["wall_seconds"] > 0 and lineage["cost"]["device_hours"] > 0
    assert lineage["logs"]["tensorboard"] == str(result.tensorboard)
    assert lineage["environment"]["packages"]["determined"] == "0.38.1"


def test_checkpoint_is_self_contained_for_prediction(trained, tmp_path: Path) -> None:
    _, result = trained
    copy = shutil.copytree(result.checkpoint_path, tmp_path / "moved")
    predictor = load_predictor(copy)
    assert predictor.classes == ["business", "sport", "tech"]
    docs = [
        "the market and the bank and investors saw profit and growth in sales",
        "the team won the match with a late goal in the league season",
        "users of the mobile phone and the internet software went online",
    ]
    probabilities = predictor.predict_proba(docs)
    assert probabilities.shape == (3, 3)
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    predictions = predictor.predict([doc.encode() for doc in docs])
    assert [p["label"] for p in predictions] == ["business", "sport", "tech"]
    assert set(predictions[0]["probabilities"]) == {"business", "sport", "tech"}
    assert predictor.predict_proba([]).shape == (0, 3)
    with pytest.raises(ValueError, match="list of inputs"):
        predictor.predict_proba("a single string")


def test_evaluation_passes_gate_and_records_test_metrics(trained) -> None:
    settings, _ = trained
    result = evaluate_version(settings)
    assert result.passed and result.accuracy >= 0.5 and result.n_items == 45
    assert "passes the gate" in result.message
    assert sum(map(sum, result.confusion)) == 45
    version = open_registry(settings).get_version("tiny-text", 1)
    assert version.metadata["metrics"]["test"]["accuracy"] == result.accuracy
    assert version.metadata["lineage"]["metrics"]["test"]["f1_macro"] == result.macro["f1"]
    metrics = result.artifacts["metrics"].read_text()
    assert f"model_test_accuracy {result.accuracy:.6g}" in metrics
    assert 'model_test_f1{class="sport"}' in metrics and metrics.endswith("# EOF\n")
    report = result.artifacts["report"].read_text()
    assert "Gate PASSED" in report and "| sport |" in report
    for name in ("confusion_matrix", "training_curves"):
        assert result.artifacts[name].read_bytes().startswith(b"\x89PNG")


def _rendered_gate(settings: Settings):
    spec = importlib.util.spec_from_file_location(
        "rendered_gate", settings.path("test/test_model_accuracy.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.test_model_accuracy


def test_rendered_gate_fails_below_threshold(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = trained
    # A second, untrained-in-effect version, and a threshold it cannot reach.
    set_hparams(settings.path("model/const.yaml"), {"learning_rate": 1e-7})
    weak = train_local(settings, settings.path("model/const.yaml"), max_steps=1)
    assert weak.version is not None and weak.version.version == 2
    write_config(settings.root, "pytorch", "text", threshold=0.999)
    registry = open_registry(settings)
    registry.add_metadata("tiny-text", 1, {"deployments": {"production": {"replicas": 1}}})
    monkeypatch.chdir(settings.root)
    gate = _rendered_gate(settings)
    with pytest.raises(AssertionError) as failure:
        gate()
    message = str(failure.value)
    assert "of tiny-text v2 is below the threshold 0.9990" in message
    assert "test accuracy 0." in message
    report = (settings.root / "reports" / "model" / "report.md").read_text()
    assert "Gate FAILED" in report and "| previous | v1 |" in report
    assert "| production | v1 |" in report

    monkeypatch.setenv("CDL_MODEL_VERSION", "1")
    write_config(settings.root, "pytorch", "text", threshold=0.5)
    gate()  # version 1 passes
    assert evaluate_version(load_settings(settings.root / "cdl.yaml")).version == 1
