"""The cluster profile hands experiments to cdl.model.cluster.submit_experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from model_fixtures import render_tree, write_config

from cdl.cli import cli
from cdl.cli.model_cmd import model
from cdl.config import load_settings

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

    monkeypatch.setattr("cdl.model.cluster.submit_experiment", fake_submit)
    return tmp_path, calls


def test_train_and_search_submit_on_cluster_profile(cluster_project) -> None:
    root, calls = cluster_project
    base = ["--config", str(root / "cdl.yaml"), "--profile", "cluster", "model"]
    result = CliRunner().invoke(cli, [*base, "train", "--max-steps", "7"])
    assert result.exit_code == 0, result.output
    assert "experiment 41 completed" in result.output
    profile, config, context, wait, overrides = calls[0]
    assert (profile, config, context, wait) == ("cluster", root / "model/const.yaml", root, True)
    assert overrides["hyperparameters"]["batches"] == 7
    assert "epochs" not in overrides["hyperparameters"]

    result = CliRunner().invoke(cli, [*base, "search"])
    assert result.exit_code == 0, result.output
    assert calls[1][1] == root / "model/adaptive.yaml" and calls[1][4] is None
    assert load_settings(root / "cdl.yaml").profile == "local"  # the file is unchanged
