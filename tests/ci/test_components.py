"""The CDL CI/CD components follow GitLab's component conventions and GitLab's CI schema."""

from __future__ import annotations

import re
from pathlib import Path

import cdl_ci_harness as h
import pytest
import yaml

NAMES = h.component_names()
PIPELINES = ["data-pipeline", "model-pipeline", "deployment-pipeline"]  # workflow order
# the release's role images
ROLES = ("data", "train-torch", "train-keras", "serve-torch", "serve-keras", "serve-mlserver")


def test_the_library_has_the_components_of_the_workflow() -> None:
    # monitoring (issue 9) is added once it exists: no stub until then
    assert set(NAMES) == {
        "data-pipeline",
        "model-pipeline",
        "deployment-pipeline",
        "monitoring",
        "template-update",
        "full",
    }


@pytest.mark.parametrize("name", NAMES)
def test_component_is_a_spec_header_then_jobs(name: str) -> None:
    component = h.load_component(name)
    assert set(component.header) == {"spec"}
    assert set(component.header["spec"]) <= {"inputs", "description"}
    assert len(component.header["spec"].get("description", "")) <= 256
    top = set(component.body) & h.GLOBAL_KEYWORDS
    assert not top, f"global keywords in a component: {sorted(top)}"


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_typed_described_and_consistent(name: str) -> None:
    component = h.load_component(name)
    inputs = component.inputs
    for required in ("job_prefix", "profile"):
        assert required in inputs
    if name != "full":
        assert "stage" in inputs
        assert inputs["profile"]["options"] == ["local", "cluster"]
    for key, spec in inputs.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key
        assert spec.get("type") in h.INPUT_TYPES, f"{key}: give a type"
        assert spec.get("description", "").strip(), f"{key}: give a description"
        if key in h.BRANCHES:
            # the branch model is the project's to say: no default that hard-codes a name
            assert "default" not in spec and spec.get("regex"), f"{key}: required, checked"
        else:
            assert "default" in spec, f"{key}: give a default (a component must work without)"
    # the defaults themselves pass the checks GitLab applies
    h.resolve_inputs(component, h.branch_inputs(component))
    # every declared input is used, every used input is declared
    assert h.used_inputs(component) == set(inputs)


@pytest.mark.parametrize("name", PIPELINES)
def test_jobs_use_the_prefix_and_stage_inputs(name: str) -> None:
    component = h.load_component(name)
    body = component.body

    def resolved(job: str, key: str) -> object:
        definition = body[job]
        if key in definition:
            return definition[key]
        parents = definition.get("extends", [])
        for parent in reversed([parents] if isinstance(parents, str) else parents):
            if parent in body and resolved(parent, key) is not None:
                return resolved(parent, key)
        return None

    for job in body:
        if job == "include":
            continue
        assert job.lstrip(".").startswith("$[[ inputs.job_prefix ]]"), f"{job}: prefix the name"
        if not job.startswith("."):
            assert resolved(job, "stage") == "$[[ inputs.stage ]]", f"{job}: stage from the input"


@pytest.mark.parametrize("name", NAMES)
def test_no_hard_coded_gitlab_hosts(name: str) -> None:
    text = h.load_component(name).text
    assert "gitlab.com" not in text
    hosts = set(re.findall(r"https?://([^/\s\"'$]+)", text))
    assert hosts <= {"127.0.0.1:9000"}, hosts
    assert "${CI_API_V4_URL}" in text or name == "full" or "$CI_API_V4_URL" in text


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("profile", ["local", "cluster"])
def test_images_are_pinned(name: str, profile: str) -> None:
    component = h.load_component(name)
    assert "image" in component.inputs
    document = h.interpolate(component, {"profile": profile, **h.branch_inputs(component)})
    images = dict(h.iter_images(document))
    assert images, "jobs name their image"
    for job, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and re.search(r"\d", tag) and tag != "latest", f"{job}: pin {image} by version"


def test_cdl_requirement_defaults_are_the_library_version(library_version: str) -> None:
    for name in PIPELINES:
        default = h.load_component(name).inputs["cdl_requirement"]["default"]
        assert default.endswith(f"=={library_version}"), (name, default)
    assert h.load_component("full").inputs["cdl_version"]["default"] == library_version


def test_full_includes_its_siblings_locally_with_every_input_forwarded() -> None:
    full = h.load_component("full")
    includes = full.body["include"]
    assert [i["local"] for i in includes] == [f"/templates/{n}.yml" for n in PIPELINES]
    for include in includes:
        sibling = h.load_component(Path(include["local"]).stem)
        # forwarded inputs exist in the sibling (GitLab rejects unknown inputs)
        assert set(include["inputs"]) <= set(sibling.inputs), include["local"]


@pytest.mark.parametrize(
    "given",
    [
        {},
        {
            "profile": "cluster",
            "framework": "keras",
            "compression": True,
            "train_automatic": True,
            "job_prefix": "x-",
        },
    ],
)
def test_full_forwards_valid_inputs(given: dict) -> None:
    full = h.load_component("full")
    document = h.interpolate(full, {**given, **h.BRANCHES})
    for include in document["include"]:
        h.resolve_inputs(h.load_component(Path(include["local"]).stem), include["inputs"])


def test_interpolation_rejects_what_gitlab_rejects() -> None:
    data = h.load_component("data-pipeline")
    with pytest.raises(h.InputError, match="not in the list of allowed options"):
        h.interpolate(data, {"profile": "laptop"})
    with pytest.raises(h.InputError, match="does not match required RegEx pattern"):
        h.interpolate(data, {"job_prefix": "Bad Prefix"})
    with pytest.raises(h.InputError, match="unknown input arguments: nope"):
        h.interpolate(data, {"nope": 1})
    with pytest.raises(h.InputError, match="provided value is not a array"):
        h.interpolate(data, {"changes": "data/**/*"})


# ------------------------------------------------------------------- GitLab's CI schema
def _write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", NAMES)
def test_spec_header_validates_against_gitlab_schema(
    name: str, ci_tools: None, tmp_path: Path
) -> None:
    header = _write(tmp_path / f"{name}.spec.yml", h.load_component(name).header)
    result = h.check_jsonschema(header)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize(
    "given",
    [
        {},
        {"profile": "cluster"},
        {"profile": "cluster", "job_prefix": "p-", "stage": "build"},
    ],
    ids=["defaults", "cluster", "cluster-prefixed"],
)
def test_jobs_document_validates_against_gitlab_schema(
    name: str, given: dict, ci_tools: None, tmp_path: Path
) -> None:
    component = h.load_component(name)
    extra = {"compression": True} if name == "deployment-pipeline" else {}
    document = h.interpolate(component, {**given, **extra, **h.branch_inputs(component)})
    # the project owns stages:, a component's jobs are validated inside a project that has them
    stages = {"stages": [given.get("stage", component.inputs["stage"]["default"])]}
    jobs = _write(tmp_path / f"{name}.jobs.yml", {**stages, **document})
    result = h.check_jsonschema(jobs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_pipeline_validates_and_releases_on_semver_tags(ci_tools: None) -> None:
    path = h.LIBRARY_DIR / ".gitlab-ci.yml"
    result = h.check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr
    pipeline = yaml.safe_load(path.read_text(encoding="utf-8"))
    semver = {"if": r"$CI_COMMIT_TAG =~ /^\d+\.\d+\.\d+$/"}
    assert pipeline[".release-tag"]["rules"] == [semver]
    chain = ["check-version", "build-package", "publish-package", "release"]
    for before, job in zip([None, *chain], chain, strict=False):
        assert pipeline[job]["extends"] == ".release-tag", job
        assert pipeline[job]["needs"][:1] == ([before] if before else []), job
    # the release also waits for the role images (absent only with CDL_RELEASE_IMAGES=false)
    images = [f"image-{role}" for role in ROLES]
    assert pipeline["release"]["needs"][1:] == [{"job": j, "optional": True} for j in images]
    assert pipeline[".release-image"]["needs"] == ["publish-package"]
    assert pipeline[".release-image"]["extends"] == ".cdl-image-build"
    assert pipeline[".release-image"]["rules"] == [
        {"if": semver["if"] + ' && $CDL_RELEASE_IMAGES != "false"'}
    ]
    release = pipeline["release"]
    assert release["release"]["tag_name"] == "$CI_COMMIT_TAG"
    # the upload goes to the project's own package registry unless a variable says otherwise
    registry = "${CI_API_V4_URL}/projects/${CI_PROJECT_ID}/packages/pypi"
    assert pipeline["variables"]["PACKAGE_REGISTRY_URL"] == registry
    publish = "\n".join(pipeline["publish-package"]["script"])
    assert "twine upload" in publish and "CI_JOB_TOKEN" in publish
    assert '--repository-url "$PACKAGE_REGISTRY_URL"' in publish
    # the public index only with a token, and only on a release tag
    pypi = pipeline["publish-pypi"]
    assert pypi["rules"] == [{"if": semver["if"] + " && $PYPI_TOKEN"}]
    assert "PYPI_TOKEN" in "\n".join(pypi["script"])
    selftest = "\n".join(pipeline["component-selftest"]["script"])
    for name in NAMES:
        assert f"$CI_SERVER_FQDN/$CI_PROJECT_PATH/{name}@$CI_COMMIT_SHA" in selftest


def test_readme_documents_every_component_and_input() -> None:
    readme = (h.LIBRARY_DIR / "README.md").read_text(encoding="utf-8")
    assert "\n## Components\n" in readme
    sections = re.split(r"\n### ", readme.split("\n## Components\n", 1)[1])
    by_name = {s.split("\n", 1)[0].strip("` "): s for s in sections[1:]}
    for name in NAMES:
        assert name in by_name, f"README: a '### `{name}`' section"
        section = by_name[name]
        assert f"/{name}@" in section, f"README {name}: a usage example"
        for key, spec in h.load_component(name).inputs.items():
            row = re.search(rf"^\| `{key}` \| ([^|]+) \| (.+?) \| ", section, re.M)
            assert row, f"README {name}: input {key} in the table"
            # the type and default in the table are the spec's
            default = _readme_default(spec["default"]) if "default" in spec else "required"
            assert row.groups() == (spec["type"], default), (name, key)


def _readme_default(value: object) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value)
    return '`""`' if value == "" else f"`{value}`"
