"""The paper's branch model in a rendered project, read from gitlab-ci-local's job lists.

A rendered news project whose default branch is ``dev`` (as the GitLab bootstrap makes it),
on both profiles: which jobs run (and how) for a push to ``dev``, a merge request into
``dev``, a push to ``main``, a schedule on ``main`` (monitoring) and a schedule with
retraining opted in (``CDL_SCHEDULE=retrain``) and a template-update schedule; every
``needs`` of a running job that is not optional names a job of the same pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest

RETRAIN = ("--variable", "CDL_SCHEDULE=retrain")
SCENARIOS: dict[str, tuple[str, ...]] = {
    "push-dev": h.branch_vars("dev"),
    "mr-into-dev": h.branch_vars("feature", "merge_request_event", target="dev"),
    "push-main": h.branch_vars("main"),
    "schedule-main": h.branch_vars("main", "schedule"),
    "schedule-main-retrain": (*h.branch_vars("main", "schedule"), *RETRAIN),
    "schedule-template-update": (
        *h.branch_vars("main", "schedule"),
        "--variable",
        "CDL_SCHEDULE=template-update",
    ),
}
DATA = {"data-lint": "on_success", "data-pipeline": "on_success", "data-labels": "on_success"}
GATES = {
    **DATA,
    "model-lint": "on_success",
    "model-train": "on_success",
    "model-evaluate": "on_success",
    "deploy-compress": "on_success",
}
LOCAL_MONITOR = {"monitoring-report": "manual"}
# the template-update component: the conflict check runs in every pipeline but scheduled
# ones; the update itself only in CDL_SCHEDULE=template-update schedules
CONFLICTS = {"template-conflicts": "on_success"}
TEMPLATE_UPDATE = {"template-update": "on_success"}
CLUSTER_BUILDS = {"data-build-image": "on_success", "model-build-image": "on_success"}
CLUSTER_DEPLOY = {
    "deploy-package": "on_success",
    "deploy-build-image": "on_success",
    "deploy-manifests": "on_success",
}
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "local": {
        "push-dev": {
            **CONFLICTS,
            **GATES,
            "deploy-select": "on_success",
            "deploy-staging": "on_success",
            **LOCAL_MONITOR,
        },
        "mr-into-dev": {**CONFLICTS, **GATES, "model-report-note": "always", **LOCAL_MONITOR},
        "push-main": {
            **CONFLICTS,
            **GATES,
            "deploy-select": "on_success",
            "deploy-production": "manual",
            **LOCAL_MONITOR,
        },
        "schedule-main": {"monitoring-report": "on_success"},
        "schedule-main-retrain": {
            **GATES,
            "deploy-select": "on_success",
            "deploy-production": "manual",
        },
        "schedule-template-update": TEMPLATE_UPDATE,
    },
    "cluster": {
        "push-dev": {
            **CONFLICTS,
            **GATES,
            **CLUSTER_BUILDS,
            "deploy-select": "on_success",
            **CLUSTER_DEPLOY,
            "deploy-staging": "on_success",
            "deploy-rollback-staging": "manual",
        },
        "mr-into-dev": {**CONFLICTS, **GATES, **CLUSTER_BUILDS, "model-report-note": "always"},
        "push-main": {
            **CONFLICTS,
            **GATES,
            **CLUSTER_BUILDS,
            "deploy-select": "on_success",
            **CLUSTER_DEPLOY,
            "deploy-production": "manual",
            "deploy-rollback-production": "manual",
        },
        "schedule-main": {"monitoring-report": "on_success"},
        "schedule-main-retrain": {
            **GATES,
            **CLUSTER_BUILDS,
            "deploy-select": "on_success",
            **CLUSTER_DEPLOY,
            "deploy-production": "manual",
        },
        "schedule-template-update": TEMPLATE_UPDATE,
    },
}


@pytest.fixture(scope="module")
def projects(
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: h.Sandbox,
    template_repo: Path,
    library_version: str,
) -> dict[str, Path]:
    """The news starter rendered per profile, ``dev`` the default branch, a change on it."""
    out = tmp_path_factory.mktemp("branch-model")
    rendered = {}
    for profile in ("local", "cluster"):
        project = out / profile
        answers = {
            "project_name": f"News {profile}",
            "starter": "news",
            "profile": profile,
            "ci_library_version": library_version,
        }
        result = h.render_project(project, sandbox, answers, template=template_repo)
        assert result.returncode == 0, result.stdout + result.stderr
        sandbox.attach_project(project, f"ml/news-{profile}")
        # the instance's dev is the rendered commit; the pipeline's commit changes cdl.yaml
        sandbox.set_default_branch(project, "dev")
        sandbox.git("checkout", "-q", "dev", cwd=project)
        with (project / "cdl.yaml").open("a", encoding="utf-8") as config:
            config.write("# changed on dev\n")
        sandbox.git("commit", "-q", "-am", "change cdl.yaml", cwd=project)
        rendered[profile] = project
    return rendered


def _running(jobs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: job for name, job in jobs.items() if job["when"] != "never"}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("profile", ["local", "cluster"])
def test_the_exact_jobs_of_each_pipeline(
    projects: dict[str, Path], sandbox: h.Sandbox, profile: str, scenario: str
) -> None:
    jobs = h.list_jobs(projects[profile], *SCENARIOS[scenario], sandbox=sandbox)
    running = _running(jobs)
    assert {n: j["when"] for n, j in running.items()} == EXPECTED[profile][scenario]

    for name, job in running.items():
        # a manual job blocks only when it is the production gate
        if job["when"] == "manual":
            assert job["allow_failure"] is (name != "deploy-production"), name
        # every need that is not optional is a job of this pipeline
        for need in job["needs"] or []:
            if not need.get("optional"):
                assert need["job"] in running, f"{name} needs {need['job']}, which is absent"
