"""A project rendered with serving_engine mlserver, in CI: its jobs, and its local deploy job.

The exact job lists are the seldon project's (the engine changes how the local deploy jobs
install, not which jobs run); the local deploy jobs get MLServer's environment: the role image
``serve-mlserver`` of the library's version, or (a ``CDL_SOURCE``, as in local runs) the pip
path with the ``serve-mlserver`` extra under ``constraints-mlserver.txt``. The slow test runs
the expanded ``deploy-staging`` job (its setup and script, as the runner's shell runs them)
with the pip path: a wheel of this work tree installed offline (``--no-index``) into the job's
virtual environment on top of the MLServer environment standing in for the runner's Python,
then package, ``mlserver`` serving, the V2 smoke request, the registry record and the stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest
import yaml

from cdl_gitlab.config import load_settings
from cdl_gitlab.registry import LocalRegistry

DEPLOY_TESTS = h.REPO_ROOT / "tests" / "deploy"
LOCAL_PUSH_DEV = {
    "template-conflicts": "on_success",
    "data-lint": "on_success",
    "data-pipeline": "on_success",
    "data-labels": "on_success",
    "model-lint": "on_success",
    "model-train": "on_success",
    "model-evaluate": "on_success",
    "deploy-compress": "on_success",
    "deploy-select": "on_success",
    "deploy-staging": "on_success",
    "monitoring-report": "manual",
}


@pytest.fixture(scope="module")
def mlserver_project(
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: h.Sandbox,
    template_repo: Path,
    library_version: str,
) -> Path:
    project = tmp_path_factory.mktemp("mlserver") / "news-ml"
    answers = {
        "project_name": "News ml",
        "serving_engine": "mlserver",
        "framework": "pytorch",
        "starter": "blank",
        "model_name": "news-demo",
        "class_names": "politics,sport,tech",
        "ci_library_version": library_version,
    }
    result = h.render_project(project, sandbox, answers, template=template_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    sandbox.attach_project(project, "ml/news-ml")
    sandbox.set_default_branch(project, "dev")
    sandbox.git("checkout", "-q", "dev", cwd=project)
    with (project / "cdl.yaml").open("a", encoding="utf-8") as config:
        config.write("# changed on dev\n")
    sandbox.git("commit", "-q", "-am", "change cdl.yaml", cwd=project)
    return project


def _expanded(project: Path, sandbox: h.Sandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    jobs = h.list_jobs(project, *h.branch_vars("dev"), sandbox=sandbox)
    return jobs, yaml.safe_load(h.expanded_ci(project))


def _image(job: dict[str, Any]) -> str:
    image = job["image"]
    return image["name"] if isinstance(image, dict) else image


def test_mlserver_project_jobs_and_their_environments(
    mlserver_project: Path, sandbox: h.Sandbox, library_version: str
) -> None:
    jobs, expanded = _expanded(mlserver_project, sandbox)
    running = {name: job["when"] for name, job in jobs.items() if job["when"] != "never"}
    assert running == LOCAL_PUSH_DEV
    answers = yaml.safe_load((mlserver_project / ".copier-answers.yml").read_text())
    registry = f"$CI_REGISTRY/{answers['ci_library_project']}"
    for job in ("deploy-staging", "deploy-production"):
        definition = expanded[job]
        variables = definition["variables"]
        assert _image(definition) == f"{registry}/serve-mlserver:{library_version}", job
        assert variables["CDL_SETUP_INSTALL"] == "image", job
        assert variables["CDL_SETUP_REQUIREMENT"] == (
            f"cdl-gitlab[serve-mlserver]=={library_version}"
        ), job
        assert variables["CDL_SETUP_CONSTRAINTS"] == "constraints-mlserver.txt", job
        assert variables["CDL_EXTRA_REQUIREMENTS"] == "torch", job
        assert variables["CDL_SETUP_SOURCE"] == "$CDL_SOURCE", job  # local runs: pip path
        script = "\n".join(definition["script"])
        assert "cdl deploy serve" in script and "deployment/smoke-request.json" in script
    for job in ("deploy-select", "deploy-compress"):  # no MLServer needed
        definition = expanded[job]
        assert _image(definition) == f"{registry}/serve-torch:{library_version}", job
        assert definition["variables"]["CDL_SETUP_CONSTRAINTS"] == "constraints.txt", job
        assert "serve-mlserver" not in definition["variables"]["CDL_SETUP_REQUIREMENT"], job
    # a change of MLServer's known-good set runs the pipeline
    assert "constraints-mlserver.txt" in expanded["deploy-staging"]["rules"][1]["changes"]


def _script(job: dict[str, Any], part: str) -> str:
    exports = [
        f'export {name}="{value["value"] if isinstance(value, dict) else value}"'
        for name, value in (job.get("variables") or {}).items()
    ]
    return "\n".join(["set -eo pipefail", *exports, *job[part]])


def _dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {key: value for key, value in (p for p in pairs if len(p) == 2)}


@pytest.mark.slow
def test_local_deploy_job_serves_with_mlserver_on_the_pip_path(
    mlserver_project: Path, sandbox: h.Sandbox, tmp_path: Path
) -> None:
    sys.path.insert(0, str(DEPLOY_TESTS))
    from deploy_models import mlserver_executable, register, torch_text_checkpoint

    from cdl_gitlab.serving import local_server

    mlserver_bin = mlserver_executable().parent  # the runner's Python: MLServer's environment
    _, expanded = _expanded(mlserver_project, sandbox)
    job = expanded["deploy-staging"]
    project = tmp_path / "news-ml"  # a clean checkout of the commit, as a runner has it
    sandbox.git("clone", "-q", "--branch", "dev", str(mlserver_project), str(project), cwd=tmp_path)
    config = yaml.safe_load((project / "cdl.yaml").read_text())
    config["deployment"]["local_port"] = local_server.free_port()
    config["deployment"]["metrics_port"] = local_server.free_port()
    (project / "cdl.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(project / "cdl.yaml")
    # model-evaluate's .cdl/: v1 registered, its test accuracy recorded (the gate's input)
    register(settings, torch_text_checkpoint(tmp_path / "ckpt"))
    LocalRegistry(settings.state_dir / "registry").add_metadata(
        "news-demo", 1, {"metrics": {"test": {"accuracy": 0.95}}}
    )
    wheel = h.build_cdl_wheel(tmp_path / "wheel")
    env = {
        "PATH": f"{mlserver_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "CI": "true",
        "CI_PROJECT_DIR": str(project),
        "CI_COMMIT_SHA": "0" * 40,
        "CI_COMMIT_BRANCH": "dev",
        "CI_PIPELINE_ID": "101",
        "CI_JOB_ID": "7",
        "CI_ENVIRONMENT_NAME": "staging",
        "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
        "CI_PROJECT_ID": "7",
        "CDL_SOURCE": str(wheel),
        "CDL_PIP_INSTALL_ARGS": "--no-index",
    }
    # deploy-select's dotenv report (its own job, in the framework's environment)
    select = subprocess.run(
        [sys.executable, "-m", "cdl_gitlab", "deploy", "select", "--out", "deploy.env"],
        cwd=project,
        env={**os.environ, "CDL_STAGING_BRANCH": "dev", "CI_COMMIT_BRANCH": "dev"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert select.returncode == 0, select.stdout + select.stderr
    env.update(_dotenv(project / "deploy.env"))
    script = "\n".join([_script(job, "before_script"), *job["script"]])
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
    finally:
        after = subprocess.run(
            ["bash", "-c", _script(job, "after_script")],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script}\n{output[-8000:]}"
    assert after.returncode == 0, after.stdout + after.stderr
    # the pip path: this wheel with the serve-mlserver extra under MLServer's constraints
    assert "cdl: cdl-gitlab from the job image" not in output
    [venv] = (project / ".cache" / "cdl-venv").iterdir()
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert any(site.glob("cdl_gitlab-*.dist-info")), "cdl-gitlab installed in the job's venv"
    # served by MLServer (the V2 route) and answered the smoke request
    assert "/v2/models/news-demo/infer" in output, output[-4000:]
    assert "sport" in output or "politics" in output or "tech" in output
    served = _dotenv(project / "deployed.env")
    assert served["CDL_SERVED_VERSION"] == env["CDL_DEPLOY_VERSION"] == "1"
    record = LocalRegistry(settings.state_dir / "registry").get_version("news-demo", 1)
    staging = record.metadata["deployments"]["staging"]
    assert staging["pipeline"] == 101 and staging["commit"] == env["CI_COMMIT_SHA"], staging
    assert local_server.read_server(load_settings(project / "cdl.yaml")) is None  # stopped
