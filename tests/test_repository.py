"""Repository-wide checks: ruff-clean, versions agree, no dataset text committed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import cdl_gitlab
from cdl_gitlab.cli import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command", [["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]]
)
def test_repository_is_ruff_clean_and_formatted(command: list[str]):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_version_is_the_ci_library_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"cdl, version {cdl_gitlab.__version__}"
    copier_default = (REPO / "copier.yml").read_text()
    assert f'default: "{cdl_gitlab.__version__}"' in copier_default, (
        "copier.yml's ci_library_version default must be the library version"
    )


def test_extras_pin_the_known_good_stack():
    project = tomllib.loads((REPO / "ci-library" / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "torch==2.13.0" in extras["train-torch"]
    assert "tensorflow-cpu==2.15.1" in extras["train-keras"]
    assert "seldon-core==1.18.2" in extras["serve"]
    assert "determined==0.38.1" in extras["ml"]
    assert not any("gitlab" in dep for dep in extras["ml"]), "training must not need python-gitlab"


def test_no_dataset_archives_are_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [p for p in tracked if p.endswith((".zip", ".gz", ".idx", "-ubyte"))]
    assert offenders == []


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")))
def test_benchmark_scripts_import_and_parse_their_arguments(script: str) -> None:
    # --help imports everything the script needs and stops before any measurement
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout
