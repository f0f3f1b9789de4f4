"""The rendered project's .gitlab-ci.yml: includes the components by version, as answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest
import yaml

SHA = "0123456789abcdef0123456789abcdef01234567"
VARIANTS: dict[str, dict[str, Any]] = {
    "news-local-component": {"project_name": "News CI", "starter": "news"},
    "fashion-cluster-project": {
        "project_name": "Fashion CI",
        "starter": "fashion",
        "profile": "cluster",
        "ci_include": "project",
        "include_compression": False,
        "include_monitoring": False,
        "image_prefix": "registry.example.org/ml/fashion",
        "ci_library_project": "platform/cdl-components",
    },
    "blank-sha": {"project_name": "Blank CI", "starter": "blank", "ci_library_version": SHA},
}
PIPELINES = ("data-pipeline", "model-pipeline", "deployment-pipeline")


@pytest.fixture(scope="module")
def rendered(
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: h.Sandbox,
    template_repo: Path,
    library_version: str,
) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rendered")
    projects = {}
    for name, answers in VARIANTS.items():
        answers = {"ci_library_version": library_version, **answers}
        dest = out / name
        result = h.render_project(dest, sandbox, answers, template=template_repo)
        assert result.returncode == 0, (
            f"copier failed for {name}:\n{result.stdout}\n{result.stderr}"
        )
        projects[name] = dest
    return projects


def _monitoring(variant: str) -> bool:
    return VARIANTS[variant].get("include_monitoring", True)


def _pipeline(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".gitlab-ci.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_pipeline_validates_against_gitlab_schema(
    rendered: dict[str, Path], variant: str
) -> None:
    result = h.check_jsonschema(rendered[variant] / ".gitlab-ci.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_project_owns_stages_and_workflow(rendered: dict[str, Path], variant: str) -> None:
    pipeline = _pipeline(rendered[variant])
    monitor = ["monitor"] if _monitoring(variant) else []
    assert pipeline["stages"] == ["template", "data", "model", "deploy", *monitor]
    rules = pipeline["workflow"]["rules"]
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in rules
    # a schedule monitors unless its CDL_SCHEDULE says otherwise (retrain is opt-in)
    assert pipeline["variables"]["CDL_SCHEDULE"]["value"] == "monitor"
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in rules
    # a branch with an open merge request runs the MR pipeline only (no double pipelines)
    assert {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"} in rules
    assert rules.index(
        {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"}
    ) < rules.index({"if": "$CI_COMMIT_BRANCH"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_includes_the_components_by_version_with_valid_inputs(
    rendered: dict[str, Path], variant: str, library_version: str
) -> None:
    answers = {
        "ci_library_version": library_version,
        "ci_library_project": "cdl/ci-library",
        "ci_include": "component",
        "profile": "local",
        "include_compression": True,
        **VARIANTS[variant],
    }
    version, library = answers["ci_library_version"], answers["ci_library_project"]
    includes = _pipeline(rendered[variant])["include"]
    names = [*PIPELINES, "monitoring"] if _monitoring(variant) else list(PIPELINES)
    names.append("template-update")
    for name, include in zip(names, includes, strict=True):
        if answers["ci_include"] == "component":
            assert include["component"] == f"$CI_SERVER_FQDN/{library}/{name}@{version}"
        else:
            assert (include["project"], include["ref"], include["file"]) == (
                library,
                version,
                f"/templates/{name}.yml",
            )
        inputs = include["inputs"]
        h.resolve_inputs(
            h.load_component(name), inputs
        )  # unknown / mistyped / out-of-options inputs fail
        assert inputs["profile"] == answers["profile"]
        assert inputs["cdl_index_url"] == (
            "${CI_API_V4_URL}/projects/" + library.replace("/", "%2F") + "/packages/pypi/simple"
        )
        requirement = inputs["cdl_requirement"]
        if len(version) == 40:
            assert "==" not in requirement  # a commit of the library has no package version
        else:
            assert requirement.endswith(f"=={version}")
        if name == "template-update":
            assert requirement.startswith("cdl-gitlab[template,gitlab]")
            assert inputs["target_branch"] == "dev" and inputs["stage"] == "template"
            continue
        assert ("cluster" in requirement) == (answers["profile"] == "cluster")
        if name == "monitoring":
            assert requirement.startswith("cdl-gitlab[monitor")
        elif name != "data-pipeline":
            framework = "keras" if answers["starter"] == "fashion" else "torch"
            assert f"train-{framework}" in requirement
    deploy = includes[2]["inputs"]
    assert deploy["compression"] is answers["include_compression"]
    assert deploy["staging_branch"] == "dev" and deploy["production_branch"] == "main"
    model = includes[1]["inputs"]
    assert (model["staging_branch"], model["production_branch"]) == ("dev", "main")
    assert deploy["production_auto"] is False


def test_cluster_images_use_the_image_prefix(rendered: dict[str, Path]) -> None:
    includes = _pipeline(rendered["fashion-cluster-project"])["include"]
    assert includes[0]["inputs"]["image_prefix"] == "registry.example.org/ml/fashion"
    assert includes[2]["inputs"]["serving_image"] == "registry.example.org/ml/fashion/serving"
    assert includes[2]["inputs"]["staging_url"] == "$CDL_STAGING_URL"


# ------------------------------------------------------------- under gitlab-ci-local
def _attach(sandbox: h.Sandbox, project: Path, path: str) -> None:
    """origin on the fake instance with dev its default branch (as the bootstrap makes it),
    origin/dev = the rendered commit, and a commit on dev changing cdl.yaml."""
    sandbox.attach_project(project, path)
    sandbox.set_default_branch(project, "dev")
    sandbox.git("checkout", "-q", "dev", cwd=project)
    with (project / "cdl.yaml").open("a", encoding="utf-8") as config:
        config.write("# changed on dev\n")
    sandbox.git("commit", "-q", "-am", "change cdl.yaml on dev", cwd=project)


@pytest.mark.parametrize(
    ("variant", "path"),
    [("news-local-component", "ml/news-ci"), ("fashion-cluster-project", "ml/fashion-ci")],
)
def test_rendered_pipeline_expands_under_gitlab_ci_local(
    rendered: dict[str, Path], sandbox: h.Sandbox, variant: str, path: str, library_version: str
) -> None:
    project = rendered[variant]
    library = VARIANTS[variant].get("ci_library_project", h.LIBRARY_PROJECT)
    if library != h.LIBRARY_PROJECT:
        sandbox.publish_library(library_version, project=library)
    _attach(sandbox, project, path)
    primed = h.prime_component_includes(project)
    if VARIANTS[variant].get("ci_include", "component") == "component":
        # the five component includes share one project@ref: the race run_gcl works around
        cache = project / ".gitlab-ci-local" / "includes" / h.HOST / library / library_version
        assert primed == [cache / "templates"] * 5
    else:
        assert primed == []
    result = h.run_gcl(project, "--preview", sandbox=sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    preview = project.parent / f"{variant}.preview.yml"
    preview.write_text(h.expanded_ci(project), encoding="utf-8")
    schema = h.check_jsonschema(preview)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    # the jobs run in the role images of the library's version, from the library's path
    expanded = yaml.safe_load(h.expanded_ci(project))
    framework = "keras" if VARIANTS[variant]["starter"] == "fashion" else "torch"
    for job, role in (("data-pipeline", "data"), ("model-train", f"train-{framework}")):
        image = expanded[job]["image"]
        name = image["name"] if isinstance(image, dict) else image
        assert name == f"$CI_REGISTRY/{library}/{role}:{library_version}", (job, name)
        assert expanded[job]["variables"]["CDL_SETUP_INSTALL"] == "image", job

    dev = {
        n: j["when"]
        for n, j in h.list_jobs(project, *h.branch_vars("dev"), sandbox=sandbox).items()
    }
    main = {
        n: j["when"]
        for n, j in h.list_jobs(project, *h.branch_vars("main"), sandbox=sandbox).items()
    }
    assert dev["data-pipeline"] == "on_success"
    assert dev["model-train"] == main["model-train"] == "on_success"
    assert dev["deploy-staging"] == "on_success" and dev["deploy-production"] == "never"
    assert main["deploy-production"] == "manual" and main["deploy-staging"] == "never"
    cluster = VARIANTS[variant].get("profile") == "cluster"
    assert (dev["deploy-build-image"] == "on_success") is cluster
    assert (dev["deploy-compress"] == "on_success") is VARIANTS[variant].get(
        "include_compression", True
    )


def test_rendered_docs_only_change_runs_none_of_the_heavy_jobs(
    rendered: dict[str, Path], sandbox: h.Sandbox, tmp_path: Path
) -> None:
    project = rendered["news-local-component"]
    if "origin" not in sandbox.git("remote", cwd=project).split():
        _attach(sandbox, project, "ml/news-ci")
    # what the pipeline of a push to main sees: origin/dev (the default branch) at main, then
    # a commit touching docs/ only
    sandbox.git("checkout", "-q", "-B", "docs-change", "main", cwd=project)
    sandbox.set_default_branch(project, "dev", "main")
    (project / "docs").mkdir(exist_ok=True)
    (project / "docs" / "notes.md").write_text("# Notes\n", encoding="utf-8")
    sandbox.git("add", "docs", cwd=project)
    sandbox.git("commit", "-q", "-m", "docs only", cwd=project)
    try:
        jobs = h.list_jobs(project, *h.branch_vars("main"), sandbox=sandbox)
        # the light conflict check runs on every push: an update can leave markers anywhere
        running = {n for n, j in jobs.items() if j["when"] != "never"} - {"template-conflicts"}
        assert jobs["template-conflicts"]["when"] == "on_success"
        assert not running, f"jobs for a docs-only change: {sorted(running)}"
    finally:
        sandbox.git("checkout", "-q", "dev", cwd=project)
