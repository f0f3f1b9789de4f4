"""Lineage: collection, validation, formatting, the CLI commands and the model card."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.cli.lineage_cmd import lineage as lineage_cmd
from cdl_gitlab.cli.registry_cmd import parse_assignments
from cdl_gitlab.cli.registry_cmd import registry as registry_cmd
from cdl_gitlab.lineage import (
    DIRTY_FILES_SHOWN,
    LineageError,
    build_lineage,
    code_version,
    environment,
    format_lineage,
    hardware,
)
from cdl_gitlab.registry import LocalRegistry, RegistryError, open_registry
from cdl_gitlab.registry.model_card import model_card


def _lineage(commit: str = "c0ffee", accuracy: float = 0.81, **overrides) -> dict:
    parts = {
        "code": {"commit": commit, "branch": "dev", "dirty": False},
        "data": {
            "train": {"repo": "news-train-validate", "branch": "master", "commit": "d" * 32},
            "test": {"repo": "news-test-validate", "branch": "master", "commit": "e" * 32},
        },
        "experiment": {"id": 3, "config": {"name": "news"}, "hparams": {"lr": 0.01}, "trial_id": 7},
        "checkpoint": {"uuid": "ck-1", "steps_completed": 100},
        "metrics": {"validation": {"accuracy": accuracy, "loss": 0.52, "batches": 40}},
        "hardware": {"cpu_model": "Test CPU", "cpu_cores": 2, "gpu_model": None, "gpu_count": 0},
        "environment": {
            "python": "3.11.9",
            "packages": {"torch": "2.13.0", "numpy": None},
            "image_digest": None,
        },
        "cost": {"wall_seconds": 12.5, "device_hours": 0.0035},
        "logs": {"tensorboard": Path("/tmp/tb")},
    }
    parts.update(overrides)
    return build_lineage(**parts)


def _git(root: Path, *args: str) -> str:
    command = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def _repository(root: Path, branch: str = "dev") -> str:
    """A git repository at ``root`` with one commit; returns its HEAD."""
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", branch)
    (root / "cdl.yaml").write_text("version: 1\n")
    _git(root, "add", "cdl.yaml")
    _git(root, "commit", "-q", "-m", f"first commit of {root.name}")
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_PROJECT_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_code_version_of_the_projects_own_repository(tmp_path: Path, no_ci) -> None:
    outer_head = _repository(tmp_path / "checkout", "main")
    project = tmp_path / "checkout" / "out" / "project"
    head = _repository(project)
    assert head != outer_head
    assert code_version(project) == {"commit": head, "branch": "dev", "dirty": False}
    (project / "cdl.yaml").write_text("version: 2\n")
    for index in range(24):
        (project / f"new-{index:02d}.py").write_text("")
    code = code_version(project)
    assert code["commit"] == head and code["dirty"] is True
    assert code["dirty_count"] == 25 and len(code["dirty_files"]) == DIRTY_FILES_SHOWN
    assert code["dirty_files"][0] == "cdl.yaml"
    _lineage(code=code)  # valid against the schema


def test_code_version_never_takes_an_enclosing_repository(tmp_path: Path, no_ci) -> None:
    _repository(tmp_path / "checkout", "main")
    project = tmp_path / "checkout" / "out" / "project"
    project.mkdir(parents=True)
    code = code_version(project)
    assert code["commit"] is None and code["branch"] is None and code["dirty"] is None
    assert code["note"] == (
        f"the project folder {project} is not a git repository "
        f"(it lies inside the repository {tmp_path / 'checkout'})"
    )
    alone = tmp_path / "alone"
    alone.mkdir()
    assert code_version(alone)["note"] == f"the project folder {alone} is not a git repository"
    _git(alone, "init", "-q")
    assert code_version(alone)["note"] == f"the git repository {alone} has no commit yet"
    _lineage(code=code)


def test_code_version_in_gitlab_ci(tmp_path: Path, no_ci, monkeypatch) -> None:
    project = tmp_path / "project"
    head = _repository(project)
    _git(project, "checkout", "-q", "--detach")
    monkeypatch.setenv("CI_COMMIT_REF_NAME", "main")
    monkeypatch.setenv("CI_COMMIT_SHA", "f" * 40)  # another repository's pipeline
    assert code_version(project) == {"commit": head, "branch": None, "dirty": False}
    monkeypatch.setenv("CI_COMMIT_SHA", head)
    assert code_version(project) == {"commit": head, "branch": "main", "dirty": False}
    # a job image without git: CI's commit, if the project is the CI project's folder
    monkeypatch.setenv("PATH", str(tmp_path / "no-git"))
    assert code_version(project)["note"] == "git is not installed"
    monkeypatch.setenv("CI_PROJECT_DIR", str(project))
    assert code_version(project) == {
        "commit": head,
        "branch": "main",
        "dirty": None,
        "note": "git is not installed; commit from GitLab CI's CI_COMMIT_SHA",
    }


def test_hardware_and_environment(monkeypatch) -> None:
    hw = hardware()
    assert hw["cpu_cores"] >= 1 and hw["cpu_model"]
    assert hw["gpu_count"] == len([hw["gpu_model"]] if hw["gpu_model"] else [])
    monkeypatch.setenv("CDL_IMAGE_DIGEST", "registry/x@sha256:abc")
    env = environment(("pytest", "surely-not-installed-pkg"))
    assert env["packages"]["pytest"] and env["packages"]["surely-not-installed-pkg"] is None
    assert env["image_digest"] == "registry/x@sha256:abc"
    assert env["python"].startswith("3.")


def test_build_lineage_validates_with_key_paths() -> None:
    lineage = _lineage()
    assert lineage["schema_version"] == 1 and lineage["logs"] == {"tensorboard": "/tmp/tb"}
    with pytest.raises(LineageError, match=r"data\.test: 'commit' is a required property"):
        _lineage(
            data={
                "train": {"repo": "r", "branch": "b", "commit": "c"},
                "test": {"repo": "r", "branch": "b"},
            }
        )
    with pytest.raises(LineageError, match=r"cost\.wall_seconds: -1 is less than"):
        _lineage(cost={"wall_seconds": -1, "device_hours": 0})
    with pytest.raises(LineageError, match="NaN"):
        _lineage(metrics={"validation": {"loss": float("nan")}})


TEST_METRICS = {
    "accuracy": 0.84,
    "f1_macro": 0.8312,
    "precision_macro": 0.85,
    "recall_macro": 0.83,
    "n_items": 120,
    "per_class": {"sport": {"f1": 0.9}},
    "confusion_matrix": {"classes": ["a", "b"], "matrix": [[1, 0], [0, 1]]},
}


def _registry_with_versions(settings, make_checkpoint) -> LocalRegistry:
    registry = open_registry(settings)
    registry.register_version("news", make_checkpoint("ck-1"), {"lineage": _lineage("c1", 0.81)})
    dirty = {
        "commit": "c2" * 20,
        "branch": "dev",
        "dirty": True,
        "dirty_count": 5,
        "dirty_files": ["cdl.yaml", "model/const.yaml", "model/model_def.py", "a.py", "b.py"],
    }
    environment = {
        "python": "3.11.9",
        "packages": {"torch": "2.13.0", "cdl-gitlab": "0.2.0", "numpy": None},
        "image_digest": "registry.example.org/news/train@sha256:" + "a" * 64,
    }
    metadata = {
        "framework": "pytorch",
        "task": "text",
        "hparams": {"lr": 0.01},
        "metrics": {"validation": {"accuracy": 0.86}},
        "lineage": _lineage(
            "c2",
            0.86,
            code=dirty,
            checkpoint={"uuid": "ck-2", "steps_completed": 100},
            environment=environment,
        ),
    }
    registry.register_version("news", make_checkpoint("ck-2"), metadata)
    registry.add_metadata(
        "news",
        2,
        {
            "metrics": {"test": TEST_METRICS},
            "lineage": {"metrics": {"test": TEST_METRICS}},
            "monitoring": {"reference": {"n_items": 120, "oov_rate": 0.01}},
        },
    )
    registry.add_metadata("news", 1, {"deployments": {"production": {"image": "img@sha256:1"}}})
    return registry


SUMMARY_V2 = """\
  code         c2c2c2c2c2c2 on dev, DIRTY: 5 uncommitted file(s) (cdl.yaml, model/const.yaml, \
model/model_def.py +2 more)
  data train   news-train-validate@master dddddddddddd
  data test    news-test-validate@master eeeeeeeeeeee
  experiment   3, trial 7
  hparams      lr=0.01
  checkpoint   ck-2, 100 steps
  validation   accuracy 0.86, loss 0.52
  test         accuracy 0.84, f1_macro 0.8312, precision_macro 0.85, recall_macro 0.83 \
(120 items)
  image        registry.example.org/news/train@sha256:{digest}
  hardware     Test CPU, 2 cores, no GPU
  environment  Python 3.11.9; cdl-gitlab 0.2.0, torch 2.13.0
  cost         12.5 s wall, 0.0035 device-hours
  also recorded  monitoring (see --json)
""".format(digest="a" * 64)


def test_format_lineage(settings, make_checkpoint) -> None:
    registry = _registry_with_versions(settings, make_checkpoint)
    header, *rows = format_lineage(registry.get_version("news", 2)).splitlines()
    assert header.startswith("news v2  (pytorch text model, registered ")
    labels = [row.split("  ")[1].strip() for row in rows]
    assert labels == [
        "code",
        "data train",
        "data test",
        "experiment",
        "hparams",
        "checkpoint",
        "validation",
        "test",
        "image",
        "hardware",
        "environment",
        "cost",
        "also recorded",
    ]
    assert [" ".join(row.split()) for row in rows] == [
        " ".join(line.split()) for line in SUMMARY_V2.splitlines()
    ]
    deployed = format_lineage(registry.get_version("news", 1)).splitlines()
    assert " ".join(deployed[1].split()) == "code c1 on dev, clean"
    assert " ".join(deployed[-1].split()) == "deployed production img@sha256:1"
    assert not any("also recorded" in line for line in deployed)


def test_format_lineage_of_a_project_outside_git(settings, make_checkpoint) -> None:
    registry = open_registry(settings)
    code = {"commit": None, "branch": None, "dirty": None, "note": "x is not a git repository"}
    registry.register_version("news", make_checkpoint("ck-1"), {"lineage": _lineage(code=code)})
    registry.register_version("news", make_checkpoint("ck-2"), {"metrics": {"test": {"acc": 1}}})
    text = format_lineage(registry.get_version("news", 1))
    assert "code         unknown: x is not a git repository\n" in text
    bare = format_lineage(registry.get_version("news", 2)).splitlines()
    assert [" ".join(line.split()) for line in bare[1:]] == [
        "checkpoint ck-2",
        "lineage none recorded (register through `cdl model` to record it)",
        "test acc 1",
    ]


def _invoke(project: Path, command, args: list[str]):
    app = AppContext(project / "cdl.yaml", None)
    return CliRunner(mix_stderr=False).invoke(command, args, obj=app, catch_exceptions=False)


def test_lineage_cli_text_and_json(project, settings, make_checkpoint) -> None:
    _registry_with_versions(settings, make_checkpoint)
    result = _invoke(project, lineage_cmd, ["news"])
    assert result.exit_code == 0 and result.output.startswith("news v2  (pytorch text model")
    lines = result.output.splitlines()
    assert len(lines) == 14, result.output  # a header and 13 rows, one per fact
    labels = [line.split("  ")[1].strip() for line in lines[1:]]
    assert len(labels) == len(set(labels))
    for raw in ("per_class", "confusion", "oov_rate", "lineage", "{"):
        assert raw not in result.output
    full = json.loads(_invoke(project, lineage_cmd, ["news", "--json"]).output)
    assert full["metadata"]["monitoring"]["reference"]["oov_rate"] == 0.01
    assert full["lineage"]["metrics"]["test"]["per_class"] == {"sport": {"f1": 0.9}}
    assert full["lineage"]["code"]["dirty_files"][2] == "model/model_def.py"
    assert full["lineage"]["code"]["commit"] == "c2" * 20
    result = _invoke(project, lineage_cmd, ["news", "v1", "--json"])
    record = json.loads(result.output)
    assert record["version"] == 1 and record["checkpoint_uuid"] == "ck-1"
    assert record["lineage"]["code"]["commit"] == "c1"
    assert record["metadata"]["deployments"]["production"]["image"] == "img@sha256:1"
    result = _invoke(project, lineage_cmd, ["news", "x1"])
    assert result.exit_code == 2 and "not a version" in result.stderr


def test_lineage_cli_defaults_to_the_configured_model(project, settings, make_checkpoint) -> None:
    _registry_with_versions(settings, make_checkpoint)
    assert "news v2" in _invoke(project, lineage_cmd, []).output
    record = json.loads(_invoke(project, lineage_cmd, ["v1", "--json"]).output)
    assert record["model"] == "news" and record["version"] == 1


def test_registry_cli(project, settings, make_checkpoint, tmp_path: Path) -> None:
    _registry_with_versions(settings, make_checkpoint)
    assert _invoke(project, registry_cmd, ["list"]).output == "news\n"
    lines = _invoke(project, registry_cmd, ["list", "news"]).output.splitlines()
    assert lines[0].startswith("v1 ") and lines[0].endswith("ck-1  [production]")
    assert lines[1].startswith("v2 ") and lines[1].endswith("ck-2")
    shown = json.loads(_invoke(project, registry_cmd, ["show", "news", "2", "--json"]).output)
    assert shown["metadata"]["lineage"]["metrics"]["test"] == TEST_METRICS
    assert "checkpoint_uuid: ck-2" in _invoke(project, registry_cmd, ["show", "news"]).output

    meta = tmp_path / "extra.yaml"
    meta.write_text("review:\n  approved_by: validator\n")
    result = _invoke(
        project,
        registry_cmd,
        ["add-metadata", "news", "2", "review.ticket=42", "note=ok", "--file", meta],
    )
    assert result.exit_code == 0, result.output
    metadata = open_registry(settings).get_version("news", 2).metadata
    assert metadata["review"] == {"approved_by": "validator", "ticket": 42}
    assert metadata["note"] == "ok"

    with pytest.raises(RegistryError, match=r"review\.ticket is already 42"):
        _invoke(project, registry_cmd, ["add-metadata", "news", "2", "review.ticket=43"])
    result = _invoke(
        project, registry_cmd, ["add-metadata", "news", "2", "review.ticket=43", "--overwrite"]
    )
    assert result.exit_code == 0

    dest = tmp_path / "dl"
    result = _invoke(project, registry_cmd, ["download", "news", "latest", "--dest", dest])
    assert result.output.strip() == str(dest)
    assert (dest / "state_dict.pth").read_text() == "ck-2"


def test_parse_assignments() -> None:
    assert parse_assignments(("a.b=1", "a.c=[1, 2]", "d=text", "e=")) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": "text",
        "e": "",
    }
    import click

    for bad in (("novalue",), ("a=1", "a.b=2"), ("a..b=1",), ("x=1", "x=2")):
        with pytest.raises(click.BadParameter):
            parse_assignments(bad)


def test_model_card(settings, make_checkpoint) -> None:
    registry = _registry_with_versions(settings, make_checkpoint)
    card = model_card(registry, "news")
    assert card.startswith("# Model card: news")
    assert "- In production: v1" in card
    table = [line for line in card.splitlines() if line.startswith("| v")]
    assert [row.split(" | ")[0] for row in table] == ["| v2", "| v1"]
    assert "`ck-2`" in table[0] and "accuracy 0.86" in table[0] and "accuracy 0.84" in table[0]
    assert "production" in table[1]
    assert "validation accuracy: 0.81 -> 0.86 (+0.05)" in card
    assert "- Deployed to production: image img@sha256:1" in card
    registry.create_model("empty")
    assert "No registered versions yet." in model_card(registry, "empty")
