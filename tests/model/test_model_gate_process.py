"""The rendered project's own entry points in fresh processes, as CI and Determined run them:
``python3 -m model.model_def`` off-cluster and the pytest gate with JUnit output."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from cdl_gitlab.registry import open_registry

pytestmark = pytest.mark.slow


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDL_", "DET_"))}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_entrypoint_script_and_pytest_gate_in_processes(project_factory) -> None:
    settings = project_factory("pytorch", "text", threshold=0.6)
    run = subprocess.run(
        [sys.executable, "-m", "model.model_def"],
        cwd=settings.root,
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "registered tiny-text v1" in run.stdout
    assert open_registry(settings).get_version("tiny-text").version == 1

    junit = settings.root / "reports" / "junit.xml"
    gate = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "test/test_model_accuracy.py",
            f"--junitxml={junit}",
            "-o",
            "addopts=",
            "--rootdir",
            str(settings.root),
        ],
        cwd=settings.root,
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    assert gate.returncode == 0, gate.stdout[-3000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "1" and suite.get("failures") == "0"
    assert (settings.root / "reports" / "model" / "metrics.txt").is_file()
    metadata = open_registry(settings).get_version("tiny-text").metadata
    assert metadata["metrics"]["test"]["accuracy"] >= 0.6
