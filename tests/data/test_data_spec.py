"""The strict pipeline-spec linter, on the rendered specs and on broken ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pachyderm_sdk.api import pfs, pps

from cdl_gitlab.config import Settings
from cdl_gitlab.data.errors import SpecError
from cdl_gitlab.data.pachyderm.spec import expand_image, lint_files, lint_spec, spec_hash


def sdk_spec() -> dict[str, Any]:
    """A spec built by the real SDK classes, as Pachyderm's JSON (camelCase) would carry it."""
    request = pps.CreatePipelineRequest(
        pipeline=pps.Pipeline(name="demo-train-validate", project=pfs.Project(name="default")),
        transform=pps.Transform(
            image="reg/data:${CDL_IMAGE_TAG}", cmd=["python", "v.py"], env={"A": "1"}
        ),
        input=pps.Input(
            cross=[
                pps.Input(pfs=pps.PfsInput(repo="demo-train", glob="/*", name="data")),
                pps.Input(pfs=pps.PfsInput(repo="demo-labels", glob="/", empty_files=True)),
            ]
        ),
        parallelism_spec=pps.ParallelismSpec(constant=2),
        datum_tries=3,
    )
    return request.to_dict()


def test_sdk_built_spec_passes() -> None:
    spec = sdk_spec()
    assert "parallelismSpec" in spec  # camelCase keys are accepted
    assert lint_spec(spec) == []


def test_rendered_specs_pass(project: Settings) -> None:
    count, problems = lint_files([project.root / "data" / "pipelines"])
    assert (count, problems) == (4, [])
    names = {
        json.loads(p.read_text())["pipeline"]["name"]
        for p in (project.root / "data" / "pipelines").glob("*.json")
    }
    assert names == {
        "demo-train-validate",
        "demo-test-validate",
        "demo-train-store-labels",
        "demo-test-store-labels",
    }


def test_rendered_image_uses_the_prefix_or_ci_registry(tmp_path: Path) -> None:
    from data_helpers import render_data_folder

    plain = render_data_folder(tmp_path / "a")
    prefixed = render_data_folder(tmp_path / "b", image_prefix="registry.example.org/ml/demo")
    image = json.loads((plain / "pipelines" / "train-validate.json").read_text())["transform"]
    assert image["image"] == "$CI_REGISTRY_IMAGE/data:${CDL_IMAGE_TAG}"
    other = json.loads((prefixed / "pipelines" / "test-validate.json").read_text())["transform"]
    assert other["image"] == "registry.example.org/ml/demo/data:${CDL_IMAGE_TAG}"
    assert other["cmd"] == image["cmd"]  # same step code for train and test


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s["transform"].update(cmdd=["x"]),
            "transform.cmdd: unknown field (did you mean cmd?)",
        ),
        (
            lambda s: s.update(parallelism_spec={"constant": "two"}),
            "parallelism_spec.constant: expected an integer",
        ),
        (lambda s: s["transform"].update(cmd="python v.py"), "transform.cmd: expected a list"),
        (lambda s: s.pop("transform"), "transform: required"),
        (lambda s: s["transform"].pop("image"), "transform.image: required"),
        (lambda s: s["pipeline"].pop("name"), "pipeline.name: required"),
        (lambda s: s.pop("input"), "input: required"),
        (
            lambda s: s["input"]["cross"][0]["pfs"].update(glob=3),
            "input.cross[0].pfs.glob: expected a string",
        ),
        (lambda s: s["input"]["cross"][1]["pfs"].pop("repo"), "input.cross[1].pfs.repo: required"),
        (lambda s: s["transform"]["env"].update(B=2), "transform.env.B: expected a string"),
        (lambda s: s.update(datumTimeout=30), "datumTimeout: expected a duration"),
        (lambda s: s.update(reprocess_spec=True), "reprocess_spec: expected a string"),
        (
            lambda s: s["input"].update(pfs={"repo": "r", "glob": "/"}),
            "input: pfs and cross are alternatives",
        ),
    ],
)
def test_broken_specs_fail_with_the_path(mutate: Any, expected: str) -> None:
    spec = sdk_spec()
    mutate(spec)
    problems = lint_spec(spec)
    assert any(expected in problem for problem in problems), problems


def test_lint_files_prefixes_the_file_and_reads_yaml(tmp_path: Path) -> None:
    spec = sdk_spec()
    spec["transform"]["cmdd"] = ["x"]
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(spec))
    (tmp_path / "broken.json").write_text("{not json")
    count, problems = lint_files([tmp_path])
    assert count == 2
    assert f"{path}: transform.cmdd: unknown field (did you mean cmd?)" in problems
    assert any("broken.json: not valid JSON" in p for p in problems)


def test_duplicate_pipeline_names(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(sdk_spec()))
    _, problems = lint_files([tmp_path])
    assert any("also defined in" in p for p in problems)


def test_spec_hash_ignores_key_order() -> None:
    spec = sdk_spec()
    reordered = dict(reversed(list(spec.items())))
    assert spec_hash(spec) == spec_hash(reordered)


def test_expand_image() -> None:
    image = "$CI_REGISTRY_IMAGE/data:${CDL_IMAGE_TAG}"
    env = {"CI_REGISTRY_IMAGE": "reg/p", "CDL_IMAGE_TAG": "abc123"}
    assert expand_image(image, env) == "reg/p/data:abc123"
    with pytest.raises(SpecError, match="CDL_IMAGE_TAG"):
        expand_image(image, {"CI_REGISTRY_IMAGE": "reg/p"})
