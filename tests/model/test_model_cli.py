"""``cdl model``: train, evaluate, predict, report and lint from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from model_fixtures import TEMPLATE, image_array, png_bytes, render_tree

from cdl_gitlab.cli import cli
from cdl_gitlab.cli.model_cmd import model

if "model" not in cli.commands:
    cli.add_command(model)
if "lineage" not in cli.commands:
    from cdl_gitlab.cli.lineage_cmd import lineage

    cli.add_command(lineage)


def run(settings, *args: str, code: int = 0) -> str:
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "model", *args]
    )
    assert result.exit_code == code, (result.output, result.stderr, result.exception)
    return result.output


def test_cli_train_evaluate_predict_report(project_factory, tmp_path) -> None:
    settings = project_factory("pytorch", "image", hparams={"arch": "mlp"})
    out = run(settings, "train", "--max-steps", "4")
    assert "registered tiny-image v1" in out and "tensorboard --logdir" in out
    out = run(settings, "evaluate", "--report-dir", str(tmp_path / "report"))
    assert "tiny-image v1 passes the gate" in out
    assert (tmp_path / "report" / "metrics.txt").is_file()
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(image_array("stripes", np.random.default_rng(1))))
    line = json.loads(run(settings, "predict", str(image)).splitlines()[0])
    assert line["input"] == str(image) and set(line["probabilities"]) == {"bars", "stripes", "dots"}
    lint = run(settings, "lint")
    assert lint.count(": ok") == 3
    card = run(settings, "report")
    assert "tiny-image" in card
    run(settings, "evaluate", "--version", "v7", code=1)


def test_cli_registers_an_experiment_trained_without_registering(project_factory) -> None:
    settings = project_factory("pytorch", "image", hparams={"arch": "mlp"})
    out = run(settings, "train", "--max-steps", "2", "--no-register")
    assert "registered" not in out and "experiment 1:" in out
    out = run(settings, "register", "1")
    assert out.startswith("registered tiny-image v1 (checkpoint ")
    card = run(settings, "report")
    assert "tiny-image" in card
    from cdl_gitlab.registry import open_registry

    version = open_registry(settings).get_version("tiny-image", 1)
    assert (version.metadata["experiment_id"], version.metadata["trial_id"]) == (1, 1)
    assert "validation_loss" in version.metadata["metrics"]["validation"]
    assert version.metadata["lineage"]["data"]["train"]["commit"]
    # the same checkpoint twice, or an unknown experiment: a clear error, nothing registered
    again = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "model", "register", "1"]
    )
    assert again.exit_code != 0
    assert "is already registered as tiny-image v1" in str(again.exception)
    unknown = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "model", "register", "9"]
    )
    assert unknown.exit_code != 0 and "no experiment with id 9" in str(unknown.exception)
    assert [v.version for v in open_registry(settings).list_versions("tiny-image")] == [1]


def _git(root, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


def test_lineage_names_the_projects_own_commit(project_factory, monkeypatch) -> None:
    from cdl_gitlab.registry import open_registry

    for name in ("CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = project_factory("pytorch", "image", hparams={"arch": "mlp"})
    checkout = settings.root.parent  # a repository the project was rendered into
    (checkout / "README").write_text("the enclosing checkout\n")
    _git(checkout, "init", "-q", "-b", "main")
    _git(checkout, "add", "README")
    _git(checkout, "commit", "-q", "-m", "checkout")
    run(settings, "train", "--max-steps", "2")
    registry = open_registry(settings)
    code = registry.get_version("tiny-image", 1).metadata["lineage"]["code"]
    assert code["commit"] is None and "is not a git repository" in code["note"]

    (settings.root / ".gitignore").write_text(".cdl/\n")
    _git(settings.root, "init", "-q", "-b", "dev")
    _git(settings.root, "add", ".")
    _git(settings.root, "commit", "-q", "-m", "project")
    (settings.root / "notes.txt").write_text("not committed\n")
    run(settings, "train", "--max-steps", "2")
    code = registry.get_version("tiny-image", 2).metadata["lineage"]["code"]
    head = _git(settings.root, "rev-parse", "HEAD")
    assert code == {
        "commit": head,
        "branch": "dev",
        "dirty": True,
        "dirty_count": 1,
        "dirty_files": ["notes.txt"],
    }
    shown = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "lineage"], catch_exceptions=False
    )
    assert f"  code         {head[:12]} on dev, DIRTY: 1 uncommitted file(s) (notes.txt)\n" in (
        shown.output
    )


def test_cli_gate_fails_with_exit_code(project_factory) -> None:
    settings = project_factory("pytorch", "image", threshold=0.999, hparams={"learning_rate": 1e-7})
    run(settings, "train", "--max-steps", "1")
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "model", "evaluate"]
    )
    assert result.exit_code == 1
    assert "fails the gate" in result.output
    assert run(settings, "evaluate", "--no-fail")


@pytest.mark.parametrize("framework", ["pytorch", "keras"])
@pytest.mark.parametrize("task", ["text", "image"])
def test_rendered_model_code_lints_and_is_ruff_clean(tmp_path, framework, task) -> None:
    answers = {
        "project_slug": "demo",
        "model_name": "my-model",
        "framework": framework,
        "task": task,
        "starter": "blank",
        "class_names": "",
        "accuracy_threshold": 0.8,
    }
    files = render_tree("model", tmp_path, answers) + render_tree("test", tmp_path, answers)
    names = {path.relative_to(tmp_path).as_posix() for path in files}
    script = "model/model_def.py" if framework == "pytorch" else "model/train_keras.py"
    assert script in names and "test/test_model_accuracy.py" in names
    from cdl_gitlab.model.config_lint import lint_paths

    configs = [tmp_path / "model" / f"{name}.yaml" for name in ("const", "adaptive", "distributed")]
    assert lint_paths(configs) == 0
    ruff = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--isolated",
        "--no-cache",
        "--line-length",
        "100",
        "--select",
        "E,F,W,I,UP,B,SIM,RUF",
        "--target-version",
        "py311",
        str(tmp_path),
    ]
    result = subprocess.run(ruff, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert TEMPLATE.is_dir()
