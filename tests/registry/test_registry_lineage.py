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
        "metrics": {"validation": {"accuracy": accuracy, "loss": 0.52}},
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


def test_code_version_reads_git_and_prefers_ci(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CI_COMMIT_SHA", raising=False)
    monkeypatch.delenv("CI_COMMIT_REF_NAME", raising=False)
    assert code_version(tmp_path) == {"commit": None, "branch": None, "dirty": None}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "dev"], check=True)
    (tmp_path / "f.txt").write_text("1")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert code_version(tmp_path) == {"commit": head.strip(), "branch": "dev", "dirty": False}
    (tmp_path / "f.txt").write_text("2")
    assert code_version(tmp_path)["dirty"] is True
    monkeypatch.setenv("CI_COMMIT_SHA", "abc123")
    monkeypatch.setenv("CI_COMMIT_REF_NAME", "main")
    assert code_version(tmp_path)["commit"] == "abc123"
    assert code_version(tmp_path)["branch"] == "main"


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


def _registry_with_versions(settings, make_checkpoint) -> LocalRegistry:
    registry = open_registry(settings)
    registry.register_version("news", make_checkpoint("ck-1"), {"lineage": _lineage("c1", 0.81)})
    registry.register_version("news", make_checkpoint("ck-2"), {"lineage": _lineage("c2", 0.86)})
    registry.add_metadata("news", 2, {"lineage": {"metrics": {"test": {"accuracy": 0.84}}}})
    registry.add_metadata("news", 1, {"deployments": {"production": {"image": "img@sha256:1"}}})
    return registry


def test_format_lineage(settings, make_checkpoint) -> None:
    registry = _registry_with_versions(settings, make_checkpoint)
    text = format_lineage(registry.get_version("news", 2))
    assert text.startswith("news v2  (registered ")
    for expected in (
        "commit c2 on dev",
        "news-train-validate@master commit " + "d" * 32,
        "3, trial 7",
        "lr=0.01",
        "metrics test",
        "accuracy=0.84",
        "Test CPU, 2 cores, no GPU",
        "torch 2.13.0",
        "12.5 s wall, 0.0035 device-hours",
        "tensorboard=/tmp/tb",
    ):
        assert expected in text, expected
    deployed = format_lineage(registry.get_version("news", 1))
    assert "production.image=img@sha256:1" in deployed


def _invoke(project: Path, command, args: list[str]):
    app = AppContext(project / "cdl.yaml", None)
    return CliRunner(mix_stderr=False).invoke(command, args, obj=app, catch_exceptions=False)


def test_lineage_cli_text_and_json(project, settings, make_checkpoint) -> None:
    _registry_with_versions(settings, make_checkpoint)
    result = _invoke(project, lineage_cmd, ["news"])
    assert result.exit_code == 0 and "news v2" in result.output and "commit c2" in result.output
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
    assert shown["metadata"]["lineage"]["metrics"]["test"] == {"accuracy": 0.84}
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
