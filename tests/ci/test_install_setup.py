"""The components' install of cdl-gitlab: inputs that reach the shell are checked, and a job
that cannot install from the registry safely stops with a clear message before pip runs.

(The install from a real registry is in test_release.py.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest
import yaml

INSTALL_INPUTS = ("cdl_requirement", "cdl_source", "cdl_index_url", "pip_install_args")


def _consumer(sandbox: h.Sandbox, project: Path, version: str, inputs: dict[str, Any]) -> Path:
    config = h.setup_consumer(version, inputs, {"cdl-installed": {"script": ["cdl --version"]}})
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
    """Inputs interpolated into a script, before_script or after_script, or into a
    CDL_SETUP_* variable the shared setup script reads."""
    scripts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("script", "before_script", "after_script"):
                    scripts.append(json.dumps(value))
                elif key == "variables" and isinstance(value, dict):
                    scripts.extend(
                        json.dumps(v) for k, v in value.items() if k.startswith("CDL_SETUP_")
                    )
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(component.body)
    return set(h._INNER.findall("\n".join(scripts)))


def test_one_setup_definition_shared_by_the_components() -> None:
    """The install script exists once (templates/shared/cdl-setup.yml); each component's
    setup job only extends it with its inputs."""
    shared = h.TEMPLATES_DIR / "shared" / "cdl-setup.yml"
    setup = yaml.safe_load(shared.read_text(encoding="utf-8"))
    assert list(setup) == [
        ".cdl-setup",
        ".cdl-install-image",
        ".cdl-install-pip",
        ".cdl-image-build",
    ]
    assert "$[[" not in shared.read_text(encoding="utf-8")  # no inputs: one configuration
    script = setup[".cdl-setup"]["before_script"][0]
    assert "CDL_SETUP_REQUIREMENT" in script and "pip install" in script
    for name in ("data-pipeline", "model-pipeline", "deployment-pipeline", "monitoring"):
        component = h.load_component(name)
        assert {"local": "/templates/shared/cdl-setup.yml"} in component.body["include"]
        setups = [job for job in component.body if job.endswith("-setup")]
        assert len(setups) == 1, setups
        assert component.body[setups[0]]["extends"][0] == ".cdl-setup"
        # no second copy of the install
        assert "-m venv" not in component.text and "pip download" not in component.text


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
        ({"cdl_requirement": "cdl-gitlab>=0.2"}, "cdl_requirement"),  # not an exact version
        ({"cdl_requirement": "cdl==0.2.0"}, "cdl_requirement"),  # another project's name
        ({"cdl_source": "$(id)"}, "cdl_source"),
        ({"cdl_source": "x; rm -rf ~"}, "cdl_source"),
        (
            {"cdl_index_url": "https://x.example/simple --extra-index-url https://y"},
            "cdl_index_url",
        ),
        ({"pip_install_args": "--no-index; curl x"}, "pip_install_args"),
        ({"constraints_file": "../constraints.txt"}, "constraints_file"),
    ],
)
def test_shell_reaching_inputs_are_rejected_by_their_regex(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str, inputs: dict[str, Any], key: str
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
        sandbox,
        tmp_path / "project",
        library_version,
        {"cdl_requirement": "cdl-gitlab", "install": "pip"},
    )
    output = _run(project, sandbox)
    assert "cdl: error: cdl_requirement 'cdl-gitlab' has no ==X.Y.Z" in output, output[-3000:]


def test_a_missing_constraints_file_stops(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    project = _consumer(
        sandbox, tmp_path / "project", library_version, {"cdl_source": "/nonexistent/cdl.whl"}
    )
    output = _run(project, sandbox)
    assert "cdl: error: constraints file 'constraints.txt' not found" in output, output[-3000:]
