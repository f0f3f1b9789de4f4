"""The ``registry`` question: cdl.yaml's ``registry.backend``, the CI inputs and extras of
``registry: mlflow``, and answers that do not fit the profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdl_gitlab.config import parse_config
from rendering import render

GITLAB_MLFLOW = "${CI_API_V4_URL}/projects/${CI_PROJECT_ID}/ml/mlflow"


def _includes(project: Path) -> dict[str, dict]:
    pipeline = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    found = {}
    for include in pipeline["include"]:
        where = include.get("component") or include.get("file")
        found[where.rsplit("/", 1)[-1].split("@")[0].removesuffix(".yml")] = include["inputs"]
    return found


def test_default_registry_follows_the_profile(render_project) -> None:
    local = render_project()
    assert parse_config((local / "cdl.yaml").read_text()).registry.backend == "local"
    assert "registry" not in _includes(local)["model-pipeline"]
    cluster = render_project(profile="cluster")
    assert parse_config((cluster / "cdl.yaml").read_text()).registry.backend == "determined"


def test_mlflow_registry_points_ci_at_gitlabs_model_registry(render_project) -> None:
    project = render_project(registry="mlflow", include_monitoring=True)
    assert parse_config((project / "cdl.yaml").read_text()).registry.backend == "mlflow"
    includes = _includes(project)
    for name in ("model-pipeline", "deployment-pipeline", "monitoring"):
        assert includes[name]["registry"] == "mlflow", name
        assert includes[name]["mlflow_tracking_uri"] == GITLAB_MLFLOW, name
        assert ",mlflow]" in includes[name]["cdl_requirement"], name
    assert "registry" not in includes["data-pipeline"]
    assert ",mlflow" in (project / "Makefile").read_text()
    for path in project.rglob("*"):  # the token is a masked variable, never a file
        if path.is_file() and ".git" not in path.parts:
            assert "glpat-" not in path.read_text(errors="replace")


@pytest.mark.parametrize(
    "answers",
    [
        {"registry": "wandb"},
        {"registry": "determined"},
        {"profile": "cluster", "registry": "local"},
    ],
)
def test_registry_answers_that_do_not_fit_are_rejected(template_dir, tmp_path, answers) -> None:
    dest = tmp_path / "project"
    with pytest.raises(ValueError) as error:
        render(template_dir, dest, answers)
    assert "registry" in str(error.value)
    assert not (dest / "cdl.yaml").exists()
