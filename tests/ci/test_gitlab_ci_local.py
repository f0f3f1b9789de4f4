"""The components as a project includes them, resolved offline by gitlab-ci-local 4.73.0.

The fake instance (``Sandbox``) serves ``cdl/ci-library`` at this work tree's version tag;
gitlab-ci-local clones it through the sandbox's ``url.<file-url>.insteadOf`` rule.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import cdl_ci_harness as h
import pytest
import yaml

STAGES = "stages: [data, model, deploy]\n"
BRANCHES = "staging_branch: dev, production_branch: main"


def _project(sandbox: h.Sandbox, tmp_path: Path, config: str, name: str = "ml/news") -> Path:
    """A project with ``config`` on main, and ``dev``, the default branch as the bootstrap
    makes it, with a commit that changed data/ on top of what the instance has."""
    project = tmp_path / "project"
    h.new_project(
        sandbox,
        project,
        name,
        {
            ".gitlab-ci.yml": config,
            "data/README.md": "data\n",
            "docs/index.md": "docs\n",
        },
    )
    sandbox.git("checkout", "-q", "-b", "dev", cwd=project)
    sandbox.set_default_branch(project, "dev")
    (project / "data" / "README.md").write_text("data, changed on dev\n", encoding="utf-8")
    sandbox.git("commit", "-q", "-am", "change data on dev", cwd=project)
    return project


def _whens(jobs: dict[str, dict]) -> dict[str, str]:
    return {name: job["when"] for name, job in jobs.items()}


@pytest.fixture()
def full_project(sandbox: h.Sandbox, tmp_path: Path, library_version: str) -> Path:
    config = STAGES + (
        "include:\n"
        f"  - component: $CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/full@{library_version}\n"
        "    inputs:\n"
        "      compression: true\n"
        "      staging_branch: dev\n"
        "      production_branch: main\n"
    )
    return _project(sandbox, tmp_path, config)


def test_component_include_resolves_offline_and_expands_to_valid_ci(
    full_project: Path, sandbox: h.Sandbox, library_version: str
) -> None:
    result = h.run_gcl(full_project, "--preview", sandbox=sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    # fetched from the fake instance into gitlab-ci-local's include cache, by tag
    cache = (
        full_project
        / ".gitlab-ci-local"
        / "includes"
        / h.HOST
        / h.LIBRARY_PROJECT
        / library_version
    )
    assert (cache / "templates" / "full.yml").is_file()
    text = h.expanded_ci(full_project)
    expanded = yaml.safe_load(text)
    assert {"data-pipeline", "model-evaluate", "deploy-staging"} <= set(expanded)
    preview = full_project / "preview.yml"
    preview.write_text(text, encoding="utf-8")
    schema = h.check_jsonschema(preview)
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_full_forwards_serving_engine_to_the_deployment_component(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    config = STAGES + (
        "include:\n"
        f"  - component: $CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/full@{library_version}\n"
        "    inputs:\n"
        "      serving_engine: mlserver\n"
        "      install: pip\n"
        "      staging_branch: dev\n"
        "      production_branch: main\n"
    )
    project = _project(sandbox, tmp_path, config)
    result = h.run_gcl(project, "--preview", sandbox=sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    expanded = yaml.safe_load(h.expanded_ci(project))
    staging = expanded["deploy-staging"]["variables"]
    assert staging["CDL_SETUP_REQUIREMENT"] == f"cdl-gitlab[serve-mlserver]=={library_version}"
    assert staging["CDL_SETUP_CONSTRAINTS"] == "constraints-mlserver.txt"
    assert staging["CDL_SETUP_INSTALL"] == "pip"
    select = expanded["deploy-select"]["variables"]
    assert select["CDL_SETUP_REQUIREMENT"].startswith("cdl-gitlab[local,serve,train-torch]")


def test_jobs_by_branch_and_pipeline_source(full_project: Path, sandbox: h.Sandbox) -> None:
    dev = _whens(h.list_jobs(full_project, *h.branch_vars("dev"), sandbox=sandbox))
    assert dev["data-lint"] == dev["data-pipeline"] == dev["data-labels"] == "on_success"
    assert (
        dev["data-build-image"] == dev["model-build-image"] == "never"
    )  # local profile: no Docker
    assert dev["model-train"] == "on_success"  # the staging branch trains
    assert dev["deploy-compress"] == dev["deploy-select"] == dev["deploy-staging"] == "on_success"
    assert dev["deploy-production"] == "never"
    assert dev["deploy-package"] == dev["deploy-build-image"] == dev["deploy-manifests"] == "never"
    assert dev["deploy-rollback-staging"] == "never"
    assert dev["model-report-note"] == "never"

    main = _whens(h.list_jobs(full_project, *h.branch_vars("main"), sandbox=sandbox))
    assert main["model-train"] == "on_success"  # never a manual job that blocks the pipeline
    assert main["deploy-select"] == "on_success"
    assert main["deploy-production"] == "manual"
    assert main["deploy-staging"] == "never"

    feature = h.list_jobs(full_project, *h.branch_vars("feature"), sandbox=sandbox)
    assert feature["model-train"]["when"] == "manual"
    assert feature["model-train"]["allow_failure"] is True  # optional, never blocking
    assert feature["deploy-select"]["when"] == "never"

    mr = _whens(
        h.list_jobs(
            full_project,
            *h.branch_vars("feature", "merge_request_event", target="dev"),
            sandbox=sandbox,
        )
    )
    assert mr["model-train"] == "on_success"
    assert mr["model-report-note"] == "always"
    assert mr["deploy-select"] == mr["deploy-staging"] == mr["deploy-production"] == "never"

    scheduled = _whens(
        h.list_jobs(full_project, *h.branch_vars("dev", "schedule"), sandbox=sandbox)
    )
    assert {n for n, w in scheduled.items() if w != "never"} == set()  # no monitoring included
    retrain = _whens(
        h.list_jobs(
            full_project,
            *h.branch_vars("dev", "schedule"),
            "--variable",
            "CDL_SCHEDULE=retrain",
            sandbox=sandbox,
        )
    )
    assert retrain["model-train"] == retrain["deploy-staging"] == "on_success"


def test_artifacts_chain_through_needs(full_project: Path, sandbox: h.Sandbox) -> None:
    jobs = h.list_jobs(full_project, *h.branch_vars("dev"), sandbox=sandbox)

    def needs(name: str) -> list[str]:
        return [n["job"] for n in jobs[name]["needs"] or []]

    assert needs("data-labels") == ["data-pipeline"]
    assert needs("model-train")[0] == "data-labels"
    assert needs("model-evaluate") == ["model-train"]  # training registers the checkpoint
    assert needs("deploy-compress") == ["model-evaluate"]
    # one job decides the version; only its registry copy (the compression job's, which
    # starts from the evaluated one) reaches it, and the deploy jobs read only its artifact
    assert needs("deploy-select") == ["model-evaluate", "deploy-compress"]
    select = {n["job"]: n for n in jobs["deploy-select"]["needs"]}
    assert select["model-evaluate"]["artifacts"] is False
    assert needs("deploy-staging") == ["deploy-select"]


def test_cluster_profile_builds_images_and_deploys_from_manifests(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    config = STAGES + (
        "include:\n"
        f"  - component: $CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/full@{library_version}\n"
        f"    inputs: {{profile: cluster, framework: keras, production_auto: true, {BRANCHES}}}\n"
    )
    project = _project(sandbox, tmp_path, config)
    (project / "data" / "Dockerfile").write_text(
        "FROM python:3.11.10-slim-bookworm\n", encoding="utf-8"
    )
    sandbox.git("add", "-A", cwd=project)
    sandbox.git("commit", "-q", "-m", "data image", cwd=project)
    preview = h.run_gcl(project, "--preview", sandbox=sandbox)
    assert preview.returncode == 0, preview.stderr
    expanded = yaml.safe_load(h.expanded_ci(project))
    assert expanded["deploy-staging"]["script"][0].startswith("cdl deploy apply --env")
    assert expanded["data-pipeline"]["script"] == [
        'cdl data deploy --image-digest "$(cat image-digest.txt)"',
        'cdl data pipeline --labels-dir "data/labels"',
    ]
    # the digest the data image build pushed reaches the deploy; one data job at a time
    assert expanded["data-build-image"]["artifacts"]["paths"] == ["image-digest.txt"]
    assert {"job": "data-build-image", "optional": True, "artifacts": True} in expanded[
        "data-pipeline"
    ]["needs"]
    assert expanded["data-pipeline"]["resource_group"] == "cdl-data"
    train = expanded["model-train"]
    assert train["variables"]["CDL_SETUP_REQUIREMENT"].startswith(
        "cdl-gitlab[cluster,train-keras]=="
    )
    assert "CDL_SETUP_REQUIREMENT" in train["before_script"][0]  # the one shared setup
    dev = _whens(h.list_jobs(project, *h.branch_vars("dev"), sandbox=sandbox))
    assert dev["data-build-image"] == "on_success"  # data/Dockerfile changed
    # the training image (the trials' environment.image) is built whenever training can run
    assert dev["model-build-image"] == dev["model-train"] == "on_success"
    build = expanded["model-build-image"]
    assert build["variables"]["CDL_BUILD_DOTENV"] == "CDL_TRAIN_IMAGE"
    assert build["artifacts"]["reports"]["dotenv"] == "build-image.env"
    assert {"job": "model-build-image", "optional": True, "artifacts": True} in train["needs"]
    assert (
        dev["deploy-package"]
        == dev["deploy-build-image"]
        == dev["deploy-manifests"]
        == "on_success"
    )
    assert dev["deploy-rollback-staging"] == "manual"
    main = _whens(h.list_jobs(project, *h.branch_vars("main"), sandbox=sandbox))
    assert main["deploy-production"] == "on_success"  # production_auto
    assert main["deploy-rollback-production"] == "manual"


def test_project_include_by_ref_works_like_the_component(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    config = (
        STAGES
        + "include:\n"
        + "".join(
            f'  - project: {h.LIBRARY_PROJECT}\n    ref: "{library_version}"\n'
            f"    file: /templates/{name}.yml\n    inputs: {{job_prefix: p-{extra}}}\n"
            for name, extra in (
                ("data-pipeline", ""),
                ("model-pipeline", f", data_job: p-data-labels, {BRANCHES}"),
                ("deployment-pipeline", f", {BRANCHES}"),
            )
        )
    )
    project = _project(sandbox, tmp_path, config)
    jobs = h.list_jobs(project, *h.branch_vars("dev"), sandbox=sandbox)
    assert {"p-data-pipeline", "p-model-train", "p-deploy-staging"} <= set(jobs)
    assert jobs["p-model-train"]["needs"][0]["job"] == "p-data-labels"


def test_a_change_only_under_docs_runs_none_of_the_heavy_jobs(
    full_project: Path, sandbox: h.Sandbox
) -> None:
    # origin/dev (the default branch) is main's commit; a commit on main that only touches docs/
    sandbox.git("checkout", "-q", "main", cwd=full_project)
    (full_project / "docs" / "index.md").write_text("docs, edited\n", encoding="utf-8")
    sandbox.git("commit", "-q", "-am", "docs only", cwd=full_project)
    whens = _whens(h.list_jobs(full_project, *h.branch_vars("main"), sandbox=sandbox))
    running = {name for name, when in whens.items() if when != "never"}
    assert not running, f"jobs that would run for a docs-only change: {sorted(running)}"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            "{profile: laptop}",
            "`profile` input: `laptop` cannot be used because it is not in the list of allowed "
            "options.",
        ),
        (
            "{job_prefix: Not A Prefix}",
            "`job_prefix` input: `Not A Prefix` does not match required regex: ^[a-z0-9_-]{0,32}$.",
        ),
        (
            '{compression: "yes", ' + BRANCHES + "}",
            "`compression` input: provided value is not a boolean.",
        ),
        ("{compression: true}", "`staging_branch` input: required value has not been provided"),
    ],
    ids=["options", "regex", "type", "required"],
)
def test_invalid_inputs_fail_with_gitlabs_message(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str, inputs: str, message: str
) -> None:
    component = "deployment-pipeline" if "compression" in inputs else "data-pipeline"
    config = STAGES + (
        "include:\n"
        f"  - component: $CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/{component}@{library_version}\n"
        f"    inputs: {inputs}\n"
    )
    project = _project(sandbox, tmp_path, config)
    result = h.run_gcl(project, "--preview", sandbox=sandbox)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "This GitLab CI configuration is invalid:" in output
    assert message in output, output


def test_library_selftest_job_passes_against_this_commit(
    sandbox: h.Sandbox, tmp_path: Path
) -> None:
    """Runs the library pipeline's component-selftest script (without its npm install) in a
    clone of the library whose origin is the fake instance: the components resolve locally
    at $CI_COMMIT_SHA, as in GitLab."""
    library = tmp_path / "ci-library"
    library.mkdir()
    h.copy_worktree(h.LIBRARY_DIR, library)
    sandbox.git("init", "-q", "-b", "main", cwd=library)
    sandbox.git("add", "-A", cwd=library)
    sandbox.git("commit", "-q", "-m", "library", cwd=library)
    sandbox.attach_project(library, h.LIBRARY_PROJECT)
    pipeline = yaml.safe_load((h.LIBRARY_DIR / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    script = [
        line for line in pipeline["component-selftest"]["script"] if "npm install" not in line
    ]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gitlab-ci-local").symlink_to(h.GCL)
    job = tmp_path / "selftest.sh"
    job.write_text("set -euo pipefail\n" + "\n".join(script) + "\n", encoding="utf-8")
    job.chmod(job.stat().st_mode | stat.S_IXUSR)
    env = sandbox.env({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    result = subprocess.run(
        ["bash", str(job)], cwd=library, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert re.search(r"component selftest: \d+ jobs checked", result.stdout)
    schema = h.check_jsonschema(library / "selftest-preview.yml")
    assert schema.returncode == 0, schema.stdout + schema.stderr
