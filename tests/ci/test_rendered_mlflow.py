"""A project rendered with ``registry: mlflow``: under gitlab-ci-local its model, deployment and
monitoring jobs point MLFLOW_TRACKING_URI at the project's GitLab model registry."""

from __future__ import annotations

from pathlib import Path

import cdl_ci_harness as h
import yaml

GITLAB_MLFLOW = "${CI_API_V4_URL}/projects/${CI_PROJECT_ID}/ml/mlflow"


def test_mlflow_registry_jobs_get_gitlabs_tracking_uri(
    tmp_path: Path, sandbox: h.Sandbox, template_repo: Path, library_version: str
) -> None:
    project = tmp_path / "news-mlflow"
    answers = {
        "ci_library_version": library_version,
        "project_name": "News MLflow",
        "starter": "news",
        "registry": "mlflow",
    }
    result = h.render_project(project, sandbox, answers, template=template_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    sandbox.attach_project(project, "ml/news-mlflow")
    h.prime_component_includes(project)
    preview = h.run_gcl(project, "--preview", sandbox=sandbox)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    jobs = {
        name: job
        for document in yaml.safe_load_all(h.expanded_ci(project))
        if isinstance(document, dict)
        for name, job in document.items()
        if isinstance(job, dict) and "script" in job
    }
    for name in ("model-train", "model-evaluate", "deploy-package", "monitoring-report"):
        matches = [job for job_name, job in jobs.items() if job_name.startswith(name)]
        assert matches, f"no job {name} in {sorted(jobs)}"
        variables = matches[0]["variables"]
        assert variables["CDL_REGISTRY"] == "mlflow", name
        assert variables["MLFLOW_TRACKING_URI"] == GITLAB_MLFLOW, name
        assert "MLFLOW_TRACKING_TOKEN" not in variables  # a masked project variable
    assert "CDL_REGISTRY" not in jobs["data-pipeline"].get("variables", {})
