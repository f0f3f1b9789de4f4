"""The local experiment tracker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdl_gitlab.config import load_settings
from cdl_gitlab.tracking import ExperimentRegistry, TrackingError, open_experiment_registry

CDL_YAML = """\
version: 1
project: {name: News, slug: news}
profile: local
model: {name: news, framework: pytorch, task: text}
data: {repo_prefix: news}
"""


def test_experiment_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDL_PROFILE", "CDL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "cdl.yaml").write_text(CDL_YAML, encoding="utf-8")
    settings = load_settings(tmp_path / "cdl.yaml")
    registry = open_experiment_registry(settings)
    assert registry.path == settings.state_dir / "experiments.sqlite"
    config = {"name": "news-search", "searcher": {"name": "adaptive_asha", "metric": "loss"}}
    exp = registry.create_experiment("news-search", config, labels={"branch": "dev"})
    t1 = registry.create_trial(exp, {"lr": 0.1})
    t2 = registry.create_trial(exp, {"lr": 0.01})
    t3 = registry.create_trial(exp, {"lr": 1.0})
    registry.report_metrics(t1, "training", 10, {"loss": 1.0})
    registry.report_metrics(t1, "validation", 10, {"loss": 0.8, "accuracy": 0.6})
    registry.report_metrics(t1, "validation", 20, {"loss": 0.5, "accuracy": 0.7})
    registry.report_metrics(t2, "validation", 10, {"loss": 0.4, "accuracy": 0.65})
    registry.add_checkpoint(t2, "ck-2", tmp_path / "ck-2", 10, {"framework": "torch"})
    registry.end_trial(t1, "COMPLETED")
    registry.end_trial(t2, "COMPLETED")
    registry.end_trial(t3, "PRUNED")
    registry.end_experiment(exp, "COMPLETED")

    loaded = registry.get_experiment(exp)
    assert (loaded.name, loaded.state, loaded.labels) == (
        "news-search",
        "COMPLETED",
        {"branch": "dev"},
    )
    assert loaded.config == config
    assert [t.state for t in loaded.trials] == ["COMPLETED", "COMPLETED", "PRUNED"]
    first = loaded.trials[0]
    assert [r.steps_completed for r in first.metrics["validation"]] == [10, 20]
    assert first.metrics["training"][0].metrics == {"loss": 1.0}
    assert loaded.trials[1].latest_checkpoint.uuid == "ck-2"
    assert loaded.trials[1].latest_checkpoint.path == (tmp_path / "ck-2").resolve()
    assert loaded.trials[2].latest_checkpoint is None

    assert registry.best_trial(exp, "loss", smaller_is_better=True).id == t2
    assert registry.best_trial(exp, "accuracy", smaller_is_better=False).id == t1
    assert registry.best_trial(exp, "f1", smaller_is_better=False) is None
    assert [e.id for e in registry.list_experiments()] == [exp]


def test_invalid_input_is_refused(tmp_path: Path) -> None:
    registry = ExperimentRegistry(tmp_path / "e.sqlite")
    exp = registry.create_experiment("x", {})
    trial = registry.create_trial(exp, {})
    with pytest.raises(TrackingError, match="metric group"):
        registry.report_metrics(trial, "eval", 1, {"loss": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TrackingError, match="end state"):
        registry.end_trial(trial, "DONE")  # type: ignore[arg-type]
    with pytest.raises(TrackingError, match="no trial with id 99"):
        registry.report_metrics(99, "training", 1, {"loss": 1.0})
    with pytest.raises(TrackingError, match="no experiment with id 42"):
        registry.get_experiment(42)
    with pytest.raises(TrackingError, match="JSON"):
        registry.create_trial(exp, {"lr": float("nan")})
