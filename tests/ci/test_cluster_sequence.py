"""CI's cluster command sequence, end to end against fresh fakes of the cluster's servers.

A project rendered on the cluster profile is expanded by gitlab-ci-local; the ``script:``
lines of its data, model and deploy jobs, in pipeline order, are run as the jobs run them
(bash, the job's ``variables`` exported, dotenv reports passed on) in the project folder,
against an empty fake pachd with its pipeline workers (``fakes.pachd_worker``), the fake
Determined master and a throw-away PostgreSQL database: data -> train -> register -> gate ->
package -> manifest. The image builds (buildah, a registry) are the only jobs not run: each
leaves the ``image-digest.txt`` (and dotenv report) its push would. The job setup
(``before_script``: the install of cdl-gitlab) is this interpreter's environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest
import yaml

from fakes.determined_master import DET_PASSWORD, DET_USER, FakeDeterminedMaster
from fakes.pachd import FakePachd
from fakes.pachd_worker import FakeWorkers, image_env

REGISTRY_IMAGE = "registry.example.org/ml/news-cluster"
SLUG = "news-cluster"
SEQUENCE = (  # the dev pipeline's jobs on the cluster profile, in the order of their needs
    "data-lint",
    "data-build-image",
    "data-pipeline",
    "data-labels",
    "model-lint",
    "model-build-image",
    "model-train",
    "model-evaluate",
    "deploy-select",
    "deploy-package",
    "deploy-build-image",
    "deploy-manifests",
)
OPTIONAL = {"model-build-image"}  # runs only when its rules say so; the rest always
BUILDS = {  # image build job -> the digest its push reports
    job: "sha256:" + hashlib.sha256(job.encode()).hexdigest()
    for job in ("data-build-image", "model-build-image", "deploy-build-image")
}


def job_env(
    project: Path, pachd: FakePachd, master: FakeDeterminedMaster, dsn: str, archive: Path
) -> dict[str, str]:
    """What a CI job on the cluster profile has: GitLab's predefined variables, the project's
    CI/CD variables (endpoints and secrets, as the bootstrap creates them), and the image's
    PATH (cdl-gitlab installed). The one place to adapt when a job needs more."""
    sha = _head(project)
    return {
        **image_env(),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(project)),
        "XDG_CONFIG_HOME": str(project.parent / "det-config"),
        # GitLab's predefined variables
        "CI": "true",
        "CI_PROJECT_DIR": str(project),
        "CI_COMMIT_SHA": sha,
        "CI_COMMIT_SHORT_SHA": sha[:8],
        "CI_COMMIT_BRANCH": "dev",
        "CI_COMMIT_REF_NAME": "dev",
        "CI_PIPELINE_ID": "101",
        "CI_JOB_ID": "1",
        "CI_REGISTRY_IMAGE": REGISTRY_IMAGE,
        "CI_SERVER_URL": "https://gitlab.example.com",
        "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
        "CI_PROJECT_ID": "7",
        # the project's CI/CD variables
        "PACHD_ADDRESS": pachd.address,
        "DET_MASTER": master.url,
        "DET_USER": DET_USER,
        "DET_PASS": DET_PASSWORD,
        "CDL_POSTGRES_DSN": dsn,
        "CDL_DATA_MIRROR": str(archive),
        "CDL_DATA_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest(),
    }


def _variables(job: dict[str, Any]) -> dict[str, str]:
    values = {}
    for name, value in (job.get("variables") or {}).items():
        values[name] = str(value["value"] if isinstance(value, dict) else value)
    return values


def _script(job: dict[str, Any], lines: list[str] | None = None) -> str:
    """The job's script as its shell runs it: variables exported, then each line."""
    exports = [f'export {name}="{value}"' for name, value in _variables(job).items()]
    return "\n".join(["set -eo pipefail", *exports, *(job["script"] if lines is None else lines)])


def _build(name: str, job: dict[str, Any]) -> str:
    """What an image build job leaves (no registry here): ``image-digest.txt`` and, when the
    job hands the image on (``CDL_BUILD_DOTENV``), its dotenv ``NAME=<repository>@<digest>``."""
    digest = BUILDS[name]
    lines = [f"printf '%s\\n' {digest} > image-digest.txt"]
    dotenv = ((job.get("artifacts") or {}).get("reports") or {}).get("dotenv")
    if dotenv:
        lines.append(
            'if [ -n "${CDL_BUILD_DOTENV:-}" ]; then printf \'%s=%s@%s\\n\' "$CDL_BUILD_DOTENV" '
            f'"$CDL_BUILD_REPOSITORY" {digest} > {dotenv}; fi'
        )
    return _script(job, lines)


def _dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {key: value for key, value in (p for p in pairs if len(p) == 2)}


@pytest.fixture
def cluster_project(
    sandbox: h.Sandbox, template_repo: Path, library_version: str, tmp_path: Path
) -> Iterator[Path]:
    project = tmp_path / SLUG
    answers = {
        "project_name": "News cluster",
        "starter": "news",
        "profile": "cluster",
        "image_prefix": REGISTRY_IMAGE,
        "include_compression": False,
        "include_monitoring": False,
        "ci_library_version": library_version,
    }
    result = h.render_project(project, sandbox, answers, template=template_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    sandbox.attach_project(project, f"ml/{SLUG}")
    sandbox.set_default_branch(project, "dev")
    sandbox.git("checkout", "-q", "dev", cwd=project)
    h.tiny_settings(project)
    sandbox.git("commit", "-q", "-am", "Tiny dataset settings", cwd=project)
    yield project


DATA_JOBS = SEQUENCE[: SEQUENCE.index("data-labels") + 1]


def run_sequence(
    project: Path, sandbox: h.Sandbox, jobs: tuple[str, ...], dsn: str, tmp_path: Path
) -> tuple[FakePachd, FakeWorkers, FakeDeterminedMaster, dict[str, str]]:
    """Run ``jobs`` of the expanded dev pipeline in order against fresh fakes; returns the
    (stopped) fake pachd, its workers, the (stopped) fake master and each job's output, for
    inspection."""
    outputs: dict[str, str] = {}
    listed = h.list_jobs(project, *h.branch_vars("dev"), sandbox=sandbox)
    whens = {name: job["when"] for name, job in listed.items()}
    required = [job for job in SEQUENCE if job not in OPTIONAL]
    assert {job: whens.get(job) for job in required} == dict.fromkeys(required, "on_success")
    jobs = tuple(job for job in jobs if whens.get(job) == "on_success")
    expanded = yaml.safe_load(h.expanded_ci(project))
    for index, job in enumerate(SEQUENCE):  # each job's needs come before it
        needs = [n["job"] if isinstance(n, dict) else n for n in expanded[job].get("needs") or []]
        assert all(SEQUENCE.index(n) < index for n in needs if n in SEQUENCE), (job, needs)

    archive = h.make_news_archive(tmp_path / "mirror" / "bbc-fulltext.zip")
    secrets = {f"{SLUG}-postgres": {"dsn": dsn}, f"{SLUG}-registry": {}}
    worker_env = {**image_env(), "CDL_CONFIG": str(project / "cdl.yaml")}
    pachd = FakePachd(kube_secrets=secrets).start()
    try:
        with (
            FakeDeterminedMaster(username=DET_USER, password=DET_PASSWORD) as master,
            FakeWorkers(pachd, project, worker_env, secrets, REGISTRY_IMAGE) as workers,
        ):
            env = job_env(project, pachd, master, dsn, archive)
            for job in jobs:
                script = _build(job, expanded[job]) if job in BUILDS else _script(expanded[job])
                result = subprocess.run(
                    ["bash", "-c", script],
                    cwd=project,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=1200,
                    check=False,
                )
                assert result.returncode == 0, (
                    f"{job} failed on the cluster fakes:\n{script}\n"
                    f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
                )
                outputs[job] = result.stdout + result.stderr
                reports = (expanded[job].get("artifacts") or {}).get("reports") or {}
                if reports.get("dotenv") and (project / reports["dotenv"]).is_file():
                    env.update(_dotenv(project / reports["dotenv"]))
    finally:
        pachd.stop()
    return pachd, workers, master, outputs


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cluster_data_jobs_run_against_fresh_fakes(
    cluster_project: Path, sandbox: h.Sandbox, postgres_url: str, tmp_path: Path
) -> None:
    """data-lint, data-pipeline, data-labels: repos before pipelines, pinned pullable images,
    every pipeline job run without error, the labels in the PostgreSQL table."""
    pachd, workers, _, outputs = run_sequence(
        cluster_project, sandbox, DATA_JOBS, postgres_url, tmp_path
    )
    deployed = outputs["data-pipeline"]
    for repo in ("train", "test", "train-labels", "test-labels"):
        assert f"{SLUG}-{repo}: input repo created" in deployed
    # the job waited for each pipeline's output commit of the data it put (wait.py)
    for pipeline in pachd.effective:
        assert re.search(rf"^{pipeline}: output commit \w{{12}} finished$", deployed, re.M)
    steps = ("validate", "store-labels")
    expected = {f"{SLUG}-{split}-{step}" for split in ("train", "test") for step in steps}
    assert set(pachd.effective) == expected
    for spec in pachd.effective.values():
        assert spec["transform"]["image"] == (
            f"{REGISTRY_IMAGE}/data:{_head(cluster_project)}@{BUILDS['data-build-image']}"
        )
        assert spec["transform"]["image_pull_secrets"] == [f"{SLUG}-registry"]
    assert {pipeline for pipeline, _, _ in workers.ran} == set(pachd.effective)
    assert [error for _, _, error in workers.ran if error] == []
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {SLUG.replace('-', '_')}_labels").fetchone()
    assert count > 0


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_cluster_command_sequence_runs_against_fresh_fakes(
    cluster_project: Path, sandbox: h.Sandbox, postgres_url: str, tmp_path: Path
) -> None:
    """data -> train -> register -> gate -> package -> manifest, as CI runs them. The trial
    runs on the fake master as a trial pod (the SDK's prep_container and launch, the rendered
    model_def's on-cluster branch); the version registered is the checkpoint it reported."""
    _, _, master, outputs = run_sequence(cluster_project, sandbox, SEQUENCE, postgres_url, tmp_path)
    (experiment_id,) = master.trial_runs
    run = master.trial_runs[experiment_id]
    assert run.returncode == 0, run.output
    # the SDK's launch layer ran the entrypoint, the trial reported its checkpoints itself
    assert "New trial runner in" in run.output and "Reported checkpoint to master" in run.output
    reported = {
        uuid: checkpoint
        for uuid, checkpoint in master.state.checkpoints.items()
        if checkpoint.get("taskId")  # reported by the trial, not added by the test
    }
    assert reported, run.output
    for checkpoint in reported.values():
        storage = checkpoint["training"]["experimentConfig"]["checkpoint_storage"]
        assert storage == {"type": "directory", "container_path": str(master.storage_root)}
        assert "model_state.pt" in checkpoint["resources"]  # the CDL files of each checkpoint
    validated = [c for c in reported.values() if "validationMetrics" in c["training"]]
    assert validated and all(
        "validation_accuracy" in c["training"]["validationMetrics"]["avgMetrics"] for c in validated
    )
    versions = [version for kept in master.state.versions.values() for version in kept]
    assert [v["checkpoint"]["uuid"] for v in versions] == [
        next(iter(sorted(validated, key=_accuracy, reverse=True)))["uuid"]
    ]
    assert f"experiment {experiment_id}: COMPLETED" in outputs["model-train"]
    manifests = cluster_project / "manifests"
    staging = (manifests / "staging.yaml").read_text(encoding="utf-8")
    assert (manifests / "production.yaml").is_file()
    assert BUILDS["deploy-build-image"] in staging


def _accuracy(checkpoint: dict[str, Any]) -> float:
    return checkpoint["training"]["validationMetrics"]["avgMetrics"]["validation_accuracy"]


def _head(project: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
