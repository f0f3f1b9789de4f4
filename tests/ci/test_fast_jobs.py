"""Fast jobs: the role images of the release, the components' jobs in them, one buildah build.

buildah does not run on this machine: the build jobs are checked by GitLab's CI schema and by
gitlab-ci-local's job lists and expansion (needs, rules, image, variables) only. The setup's
choice between the role image and the pip path runs for real (shell executor), with this
machine's Python standing in for the role image.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import package_index as pi
import pytest
import yaml

ROLES = ("data", "train-torch", "train-keras", "serve-torch", "serve-keras", "serve-mlserver")
IMAGE_JOBS = tuple(f"image-{role}" for role in ROLES)
PIPELINES = ("data-pipeline", "model-pipeline", "deployment-pipeline")
BUILD_JOBS = ("data-build-image", "model-build-image", "deploy-build-image")
SHARED = h.TEMPLATES_DIR / "shared" / "cdl-setup.yml"


def test_no_kaniko_anywhere() -> None:
    """kaniko's upstream was archived in 2025: no component, pipeline or project uses it."""
    roots = [h.LIBRARY_DIR, h.REPO_ROOT / "template"]
    roots += [h.REPO_ROOT / name for name in ("use_case_news", "use_case_fashion")]
    found = []
    for root in roots:
        for rel in h.worktree_files(root):
            if rel == "CHANGELOG.md" or not rel.endswith((".yml", ".jinja", ".md", "Dockerfile")):
                continue
            if "kaniko" in (root / rel).read_text(encoding="utf-8").lower():
                found.append(f"{root.name}/{rel}")
    assert not found, found


def test_one_buildah_build_definition_shared_by_the_components() -> None:
    shared = yaml.safe_load(SHARED.read_text(encoding="utf-8"))
    build = shared[".cdl-image-build"]
    assert build["variables"]["STORAGE_DRIVER"] == "vfs"  # unprivileged runners
    assert build["variables"]["BUILDAH_ISOLATION"] == "chroot"
    script = "\n".join(build["script"])
    assert "buildah build" in script and "buildah push --digestfile image-digest.txt" in script
    for name, job in zip(PIPELINES, BUILD_JOBS, strict=True):
        component = h.load_component(name)
        definition = component.body[f"$[[ inputs.job_prefix ]]{job}"]
        assert definition["extends"] == ".cdl-image-build", name
        assert definition["image"] == "$[[ inputs.builder_image ]]", name
        assert "script" not in definition, f"{name}: the build is the shared one"
        assert "buildah build" not in component.text, f"{name}: no copy of the build"
        builder = component.inputs["builder_image"]["default"]
        assert re.fullmatch(r"quay\.io/buildah/stable:v\d+\.\d+\.\d+", builder), builder


def test_role_images_are_built_from_the_library_alone() -> None:
    dockerfile = (h.LIBRARY_DIR / "images" / "Dockerfile").read_text(encoding="utf-8")
    # cdl-gitlab alone from the registry (no other index), then the deps under constraints
    assert '--no-deps --only-binary=:all: \\\n       --index-url "$CDL_INDEX_URL"' in dockerfile
    assert '-c "/opt/cdl/$CDL_CONSTRAINTS"' in dockerfile
    assert "ARG CDL_CONSTRAINTS=constraints.txt" in dockerfile
    # the known-good sets of the template (MLServer's environment has its own), shipped with
    # the library (which builds alone)
    mlserver = "{% if serving_engine == 'mlserver' %}constraints-mlserver.txt{% endif %}"
    for name, template in (
        ("constraints.txt", "constraints.txt"),
        ("constraints-mlserver.txt", mlserver),
    ):
        assert f"COPY {name} /opt/cdl/{name}" in dockerfile
        shipped = (h.LIBRARY_DIR / "images" / name).read_text(encoding="utf-8")
        assert shipped == (h.REPO_ROOT / "template" / template).read_text(encoding="utf-8")


def test_release_pipeline_builds_the_role_images_on_a_tag(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", library_version)
    tag = h.list_jobs(library, *pi.tag_list_args(library_version), sandbox=sandbox)
    for job in IMAGE_JOBS:
        assert tag[job]["when"] == "on_success", (job, tag[job])
        assert tag[job]["stage"] == "images"
        assert [n["job"] for n in tag[job]["needs"]] == ["publish-package"]
    needs = {n["job"]: n.get("optional", False) for n in tag["release"]["needs"]}
    assert needs == {"publish-package": False, **dict.fromkeys(IMAGE_JOBS, True)}
    # no images on a branch, on a tag that is not a release, or when the release opts out
    for args in (
        h.branch_vars("main"),
        pi.tag_list_args(library_version + "-rc1"),
        (*pi.tag_list_args(library_version), "--variable", "CDL_RELEASE_IMAGES=false"),
    ):
        jobs = h.list_jobs(library, *args, sandbox=sandbox)
        assert all(jobs[job]["when"] == "never" for job in IMAGE_JOBS), args

    # expanded: the shared buildah job, pushed as $CI_REGISTRY_IMAGE/<role>:<tag>, each
    # role's extras, the registry's simple index; valid against GitLab's CI schema
    result = h.run_gcl(library, "--preview", *pi.tag_list_args(library_version), sandbox=sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    preview_file = library / ".gitlab-ci-local" / "expanded-gitlab-ci.yml"
    schema = h.check_jsonschema(preview_file)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    preview = yaml.safe_load(preview_file.read_text(encoding="utf-8"))
    extras = {
        "data": "cluster",
        "train-torch": "cluster,train-torch",
        "train-keras": "cluster,train-keras",
        "serve-torch": "cluster,serve,train-torch",
        "serve-keras": "cluster,serve,train-keras",
        "serve-mlserver": "serve-mlserver",
    }
    for role, job in zip(ROLES, IMAGE_JOBS, strict=True):
        definition = preview[job]
        assert _image(definition) == "$BUILDAH_IMAGE"
        assert "buildah build" in "\n".join(definition["script"])
        variables = definition["variables"]
        assert variables["CDL_BUILD_REPOSITORY"] == f"$CI_REGISTRY_IMAGE/{role}"
        assert variables["CDL_BUILD_TAG"] == "$CI_COMMIT_TAG"
        assert variables["CDL_BUILD_DOCKERFILE"] == "$CI_PROJECT_DIR/images/Dockerfile"
        args = variables["CDL_BUILD_ARGS"].split()
        assert f"CDL_EXTRAS={extras[role]}" in args and "CDL_VERSION=$CI_COMMIT_TAG" in args
        assert "CDL_INDEX_URL=$PACKAGE_REGISTRY_URL/simple" in args
        if role == "serve-mlserver":  # its own known-good set; torch beside the extra
            assert "CDL_CONSTRAINTS=constraints-mlserver.txt" in args
            assert "CDL_PACKAGES=torch==2.13.0" in args
    assert re.fullmatch(
        r"quay\.io/buildah/stable:v\d+\.\d+\.\d+", preview["variables"]["BUILDAH_IMAGE"]
    )


def _image(job: dict[str, Any]) -> str:
    """A job's image name (gitlab-ci-local's preview writes ``image: {name: ...}``)."""
    image = job["image"]
    return image["name"] if isinstance(image, dict) else image


# ------------------------------------------------------------------- the components
def _consumer_preview(
    sandbox: h.Sandbox, project: Path, version: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    """gitlab-ci-local --preview of a project including every pipeline component and
    monitoring at ``version`` with ``inputs`` (plus the branch model)."""
    given = {**h.BRANCHES, **inputs}
    include = [
        {
            "component": f"$CI_SERVER_FQDN/{h.LIBRARY_PROJECT}/{name}@{version}",
            "inputs": {k: v for k, v in given.items() if k in h.load_component(name).inputs},
        }
        for name in ("data-pipeline", "model-pipeline", "deployment-pipeline", "monitoring")
    ]
    config = {"stages": ["data", "model", "deploy", "monitor"], "include": include}
    h.new_project(sandbox, project, "ml/consumer", {".gitlab-ci.yml": yaml.safe_dump(config)})
    h.prime_component_includes(project)
    result = h.run_gcl(project, "--preview", sandbox=sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    # the expanded configuration as gitlab-ci-local writes it (its piped stdout can be cut
    # short on a busy machine when the process exits)
    preview = project / ".gitlab-ci-local" / "expanded-gitlab-ci.yml"
    schema = h.check_jsonschema(preview)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    return yaml.safe_load(preview.read_text(encoding="utf-8"))


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_component_jobs_run_in_the_role_image_of_their_version(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str, framework: str
) -> None:
    preview = _consumer_preview(
        sandbox,
        tmp_path / "project",
        library_version,
        {"profile": "cluster", "framework": framework},
    )
    registry = "$CI_REGISTRY/cdl/ci-library"
    roles = {
        "data-pipeline": "data",
        "data-labels": "data",
        "model-train": f"train-{framework}",
        "model-evaluate": f"train-{framework}",
        "deploy-package": f"serve-{framework}",
        "deploy-select": f"serve-{framework}",
    }
    for job, role in roles.items():
        assert _image(preview[job]) == f"{registry}/{role}:{library_version}", job
        assert preview[job]["variables"]["CDL_SETUP_INSTALL"] == "image", job
        # no pip cache in a role image; only the virtual environment of a job that takes the
        # pip path anyway (a cdl_source) is kept
        [cache] = preview[job]["cache"]
        assert cache["paths"] == [".cache/cdl-venv"], job
    # monitoring has no role image: the pip path, with the cache
    report = preview["monitoring-report"]
    assert report["variables"]["CDL_SETUP_INSTALL"] == "pip"
    assert report["cache"][0]["key"]["files"] == ["constraints.txt"]
    # the image builds: the shared buildah job in the pinned builder image
    for job in BUILD_JOBS:
        assert _image(preview[job]).startswith("quay.io/buildah/stable:v"), job
        assert "buildah push" in "\n".join(preview[job]["script"]), job
    assert "kaniko" not in yaml.safe_dump(preview)


def test_install_pip_keeps_the_pip_path_with_a_cache_keyed_on_the_constraints(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    preview = _consumer_preview(sandbox, tmp_path / "project", library_version, {"install": "pip"})
    for job in ("data-pipeline", "model-train", "deploy-staging", "monitoring-report"):
        definition = preview[job]
        assert _image(definition) == "python:3.11.11-slim-bookworm", job
        assert definition["variables"]["CDL_SETUP_INSTALL"] == "pip", job
        assert definition["variables"]["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip", job
        pip_cache, venv_cache = definition["cache"]  # (expanded: a list of caches)
        assert pip_cache["key"] == {"files": ["constraints.txt"], "prefix": "cdl-pip"}
        assert pip_cache["paths"] == [".cache/pip"]
        # the jobs' virtual environments: one cache per requirement (the component's jobs)
        assert venv_cache["key"] == {
            "files": ["constraints.txt"],
            "prefix": "cdl-venv-$CDL_SETUP_REQUIREMENT",
        }
        assert venv_cache["paths"] == [".cache/cdl-venv"]


# -------------------------------------------------- the setup's choice, run for real
def _setup_job(sandbox: h.Sandbox, project: Path, version: str, inputs: dict[str, Any]) -> str:
    """One job extending the data component's setup, run with the shell executor; this
    machine's Python (cdl-gitlab of this checkout installed) stands in for the role image."""
    script = [
        "cdl --version",
        "if [ -d .cdl-venv ] || [ -d .cache/cdl-venv ]; then echo setup-pip-path;"
        " else echo setup-no-venv; fi",
    ]
    config = h.setup_consumer(version, inputs, {"cdl-installed": {"script": script}})
    h.new_project(sandbox, project, "ml/consumer", {".gitlab-ci.yml": config})
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = h.run_gcl(
        project,
        "--force-shell-executor",
        "--shell-isolation",
        "--variable",
        "PIP_RETRIES=0",
        "cdl-installed",
        sandbox=sandbox,
        extra_env={"PATH": path, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    return result.stdout + result.stderr


def test_the_role_image_installs_nothing(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    output = _setup_job(sandbox, tmp_path / "project", library_version, {"constraints_file": ""})
    assert "cdl: cdl-gitlab from the job image" in output, output[-3000:]
    assert f"cdl, version {library_version}" in output, output[-3000:]
    assert "setup-no-venv" in output, output[-3000:]
    assert h.job_summary(output).get("cdl-installed") == "success", output[-3000:]


def test_an_image_of_another_version_takes_the_pip_path(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    output = _setup_job(
        sandbox,
        tmp_path / "project",
        library_version,
        {
            "constraints_file": "",
            "cdl_requirement": "cdl-gitlab==9.9.9",
            "cdl_index_url": "http://127.0.0.1:9/simple",
        },
    )
    message = (
        f"cdl: the job image has cdl-gitlab {library_version}, not 9.9.9: installing it with pip"
    )
    assert message in output, output[-3000:]
    # the pip path then asks the (unreachable) registry for 9.9.9, and the job fails
    assert h.job_summary(output).get("cdl-installed") == "failed", output[-3000:]


def test_a_version_bump_that_forgets_the_role_images_fails_the_check(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    """The tag, __version__ and cdl_requirement say 9.9.9, the role images still X.Y.Z."""
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", "9.9.9", version="9.9.9")
    for path in (library / "templates").glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        text = text.replace(f"=={library_version}", "==9.9.9")
        text = text.replace(f"default: {library_version}\n", "default: 9.9.9\n")
        path.write_text(text, encoding="utf-8")
    sandbox.git("commit", "-q", "-am", "bump all but the role images", cwd=library)
    sandbox.git("tag", "-f", "-a", "9.9.9", "-m", "9.9.9", cwd=library)
    result = h.run_gcl(
        library, *pi.release_args("9.9.9", "check-version", needs=False), sandbox=sandbox
    )
    output = result.stdout + result.stderr
    assert h.job_summary(output).get("check-version") == "failed", output[-3000:]
    stale = ", ".join(f"{name}.yml: {library_version}" for name in sorted(PIPELINES))
    assert f"install another version by default: {stale}\n" in output, output[-3000:]


def test_the_pip_path_reuses_the_virtual_environment_of_an_earlier_job(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    """Three jobs on the pip path, one after the other, each in its own work tree (shell
    isolation) with GitLab's cache between them: the first installs the wheel into a virtual
    environment, the second takes that environment from the cache (its scripts moved to the
    second work tree, so `cdl` runs), the third has an extra requirement and installs its own."""
    wheel = h.build_cdl_wheel(tmp_path / "wheel")
    inputs = {
        "constraints_file": "",
        "cdl_source": str(wheel),
        "pip_install_args": "--no-index",
        "install": "pip",
    }
    script = ["cdl --version", h.WHERE_IS_CDL]
    config = h.setup_consumer(
        library_version,
        inputs,
        {
            "first": {"needs": [], "script": script},
            "second": {"needs": ["first"], "script": script},
            "third": {
                "needs": ["second"],
                "variables": {"CDL_EXTRA_REQUIREMENTS": "pytest>=8"},
                "script": script,
            },
        },
    )
    project = tmp_path / "project"
    h.new_project(sandbox, project, "ml/consumer", {".gitlab-ci.yml": config})
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = h.run_gcl(
        project,
        "--force-shell-executor",
        "--shell-isolation",
        "--max-job-name-padding",
        "0",
        "first",
        "second",
        "third",
        sandbox=sandbox,
        extra_env={"PATH": path, "PYTHONPATH": ""},  # the job's cdl_gitlab: the installed one
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    def lines(name: str) -> str:
        return "\n".join(line for line in output.splitlines() if line.startswith(f"{name} "))

    cached = "cdl: cdl-gitlab from the cached virtual environment .cache/cdl-venv/"
    builds = project / ".gitlab-ci-local" / "builds"
    venv = r"/\.cache/cdl-venv/([0-9a-f]{16})/lib/python3\.11/site-packages/cdl_gitlab/"
    keys = {}
    for name, reused in (("first", False), ("second", True), ("third", False)):
        log = lines(name)
        assert (cached in log) is reused, log[-3000:]
        assert f"cdl, version {library_version}" in log, log[-3000:]
        found = re.search("cdl_gitlab from " + re.escape(str(builds / name)) + venv, log)
        assert found, log[-3000:]
        keys[name] = found.group(1)
    assert keys["first"] == keys["second"] != keys["third"]


@pytest.mark.parametrize("install", ["image", "pip"])
def test_mlserver_engine_serves_locally_with_mlserver(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str, install: str
) -> None:
    """serving_engine mlserver: the local deploy jobs (package, serve, smoke test) get MLServer's
    environment, the role image serve-mlserver or its extra under its own constraints; the
    jobs that neither serve nor need MLServer keep the framework's."""
    preview = _consumer_preview(
        sandbox,
        tmp_path / "project",
        library_version,
        {"serving_engine": "mlserver", "install": install},
    )
    registry = "$CI_REGISTRY/cdl/ci-library"
    for job in ("deploy-staging", "deploy-production"):
        variables = preview[job]["variables"]
        assert variables["CDL_SETUP_INSTALL"] == install, job
        assert variables["CDL_SETUP_REQUIREMENT"] == (
            f"cdl-gitlab[serve-mlserver]=={library_version}"
        ), job
        assert variables["CDL_SETUP_CONSTRAINTS"] == "constraints-mlserver.txt", job
        assert variables["CDL_EXTRA_REQUIREMENTS"] == "torch", job
        assert "cdl deploy serve" in "\n".join(preview[job]["script"]), job
        if install == "image":
            assert _image(preview[job]) == f"{registry}/serve-mlserver:{library_version}", job
        else:
            assert _image(preview[job]) == "python:3.11.11-slim-bookworm", job
            assert variables["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip", job
    for job in ("deploy-select", "deploy-package", "deploy-manifests"):
        variables = preview[job]["variables"]
        assert "serve-mlserver" not in variables["CDL_SETUP_REQUIREMENT"], job
        assert variables["CDL_SETUP_CONSTRAINTS"] == "constraints.txt", job
        if install == "image":
            assert _image(preview[job]) == f"{registry}/serve-torch:{library_version}", job


def test_seldon_engine_serves_locally_in_the_framework_image(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    preview = _consumer_preview(sandbox, tmp_path / "project", library_version, {})
    registry = "$CI_REGISTRY/cdl/ci-library"
    for job in ("deploy-staging", "deploy-production"):
        assert _image(preview[job]) == f"{registry}/serve-torch:{library_version}", job
        variables = preview[job]["variables"]
        assert variables["CDL_SETUP_REQUIREMENT"].startswith("cdl-gitlab[serve,"), job
        assert variables["CDL_SETUP_CONSTRAINTS"] == "constraints.txt", job
        assert "CDL_EXTRA_REQUIREMENTS" not in variables, job
