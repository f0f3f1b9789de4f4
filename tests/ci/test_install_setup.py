"""The components' install of cdl-gitlab: inputs that reach the shell are checked, and a job
that cannot install from the registry safely stops with a clear message before pip runs.

(The install from a real registry is in test_release.py.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cdl_ci_harness as h
import pytest

INSTALL_INPUTS = ("cdl_requirement", "cdl_source", "cdl_index_url", "pip_install_args")


def _consumer(sandbox: h.Sandbox, project: Path, version: str, inputs: str) -> Path:
    config = (
        "stages: [data]\n"
        "include:\n"
        f"  - component: $CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/data-pipeline@{version}\n"
        f"    inputs: {inputs}\n"
        "cdl-installed:\n"
        "  extends: .data-setup\n"
        "  stage: data\n"
        "  script:\n"
        "    - cdl --version\n"
    )
    h.new_project(sandbox, project, "ml/consumer", {".gitlab-ci.yml": config})
    return project


def _run(project: Path, sandbox: h.Sandbox) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = h.run_gcl(
        project,
        "--force-shell-executor",
        "--shell-isolation",
        "cdl-installed",
        sandbox=sandbox,
        extra_env={"PATH": path, "PYTHONPATH": ""},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    return output


def _shell_inputs(component: h.Component) -> set[str]:
    """Inputs interpolated into a script, before_script or after_script."""
    scripts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("script", "before_script", "after_script"):
                    scripts.append(json.dumps(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(component.body)
    return set(h._INNER.findall("\n".join(scripts)))


@pytest.mark.parametrize("name", h.COMPONENTS)
def test_every_input_that_reaches_the_shell_is_checked(name: str) -> None:
    component = h.load_component(name)
    for key in _shell_inputs(component):
        spec = component.inputs[key]
        checked = "regex" in spec or "options" in spec or spec["type"] in ("boolean", "number")
        assert checked, f"{name}: input {key} reaches the shell: give it a regex or options"
    if name != "full":
        assert set(INSTALL_INPUTS) <= _shell_inputs(component) | {"cdl_index_url"}


@pytest.mark.parametrize(
    ("inputs", "key"),
    [
        ("{cdl_requirement: cdl-gitlab>=0.2}", "cdl_requirement"),  # not an exact version
        ("{cdl_requirement: cdl==0.2.0}", "cdl_requirement"),  # another project's name
        ('{cdl_source: "$(id)"}', "cdl_source"),
        ('{cdl_source: "x; rm -rf ~"}', "cdl_source"),
        (
            '{cdl_index_url: "https://x.example/simple --extra-index-url https://y"}',
            "cdl_index_url",
        ),
        ('{pip_install_args: "--no-index; curl x"}', "pip_install_args"),
        ('{constraints_file: "../constraints.txt"}', "constraints_file"),
    ],
)
def test_shell_reaching_inputs_are_rejected_by_their_regex(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str, inputs: str, key: str
) -> None:
    project = _consumer(sandbox, tmp_path / "project", library_version, inputs)
    result = h.run_gcl(project, "--preview", sandbox=sandbox)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"`{key}` input:" in output and "does not match required regex" in output, output


def test_a_registry_install_without_an_exact_version_stops(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    project = _consumer(
        sandbox, tmp_path / "project", library_version, "{cdl_requirement: cdl-gitlab}"
    )
    output = _run(project, sandbox)
    assert "cdl: error: cdl_requirement 'cdl-gitlab' has no ==X.Y.Z" in output, output[-3000:]


def test_a_missing_constraints_file_stops(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    project = _consumer(
        sandbox, tmp_path / "project", library_version, "{cdl_source: /nonexistent/cdl.whl}"
    )
    output = _run(project, sandbox)
    assert "cdl: error: constraints file 'constraints.txt' not found" in output, output[-3000:]
