"""The cluster profile hands experiments to cdl_gitlab.model.cluster.submit_experiment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_fixtures import render_tree, write_config

from cdl_gitlab.cli import cli
from cdl_gitlab.cli.model_cmd import model
from cdl_gitlab.config import load_settings
from cdl_gitlab.registry.base import ModelVersion

if "model" not in cli.commands:
    cli.add_command(model)


@pytest.fixture
def cluster_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list]:
    write_config(tmp_path, "pytorch", "text", 0.5)
    answers = {
        "project_slug": "tiny-text",
        "model_name": "tiny-text",
        "framework": "pytorch",
        "task": "text",
    }
    render_tree("model", tmp_path, answers)
    calls: list = []

    def fake_submit(settings, config_path, context_dir, wait=True, overrides=None):
        calls.append((settings.profile, Path(config_path), Path(context_dir), wait, overrides))
        return 41

    def fake_register(settings, experiment_id, exp_conf):
        calls.append(("register", experiment_id, exp_conf))
        return ModelVersion("tiny-text", 3, "ck-best", datetime(2026, 11, 23, tzinfo=UTC))

    monkeypatch.setattr("cdl_gitlab.model.cluster.submit_experiment", fake_submit)
    monkeypatch.setattr("cdl_gitlab.model.cluster.register_best_checkpoint", fake_register)
    return tmp_path, calls


def test_train_and_search_submit_on_cluster_profile(cluster_project) -> None:
    root, calls = cluster_project
    base = ["--config", str(root / "cdl.yaml"), "--profile", "cluster", "model"]
    result = CliRunner().invoke(cli, [*base, "train", "--max-steps", "7"])
    assert result.exit_code == 0, result.output
    assert "experiment 41 completed" in result.output
    assert "registered tiny-text v3" in result.output
    profile, config, context, wait, overrides = calls[0]
    assert (profile, config, context, wait) == ("cluster", root / "model/const.yaml", root, True)
    assert overrides["hyperparameters"]["batches"] == 7
    assert "epochs" not in overrides["hyperparameters"]
    # the best checkpoint is registered with the config as submitted (overrides applied)
    kind, experiment_id, exp_conf = calls[1]
    assert (kind, experiment_id) == ("register", 41)
    assert exp_conf["hyperparameters"]["batches"] == 7

    result = CliRunner().invoke(cli, [*base, "train", "--no-register"])
    assert result.exit_code == 0, result.output
    assert "registered" not in result.output and len(calls) == 3

    result = CliRunner().invoke(cli, [*base, "search"])
    assert result.exit_code == 0, result.output
    assert calls[3][1] == root / "model/adaptive.yaml" and calls[3][4] is None
    assert len(calls) == 4  # a search registers only when asked
    result = CliRunner().invoke(cli, [*base, "search", "--register"])
    assert result.exit_code == 0, result.output
    assert calls[5][0] == "register" and "registered tiny-text v3" in result.output
    assert load_settings(root / "cdl.yaml").profile == "local"  # the file is unchanged
