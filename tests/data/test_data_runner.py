"""The local runner executes the rendered specs with the Pachyderm contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import make_corpus

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.commits import CommitRef
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.pachyderm.runner import glob_datums, load_pipelines, run_hash, run_pipelines
from cdl_gitlab.data.stores.local_store import LocalStore


def _quiet(_: str) -> None:
    pass


def _put_corpus(settings: Settings, store: LocalStore, repo: str, tmp_path: Path) -> dict[str, str]:
    expected = make_corpus(tmp_path / repo, per_class=6)
    store.create_repo(repo)
    store.put(repo, "master", tmp_path / repo)
    return expected


def test_validate_pipeline_end_to_end(project: Settings, store: LocalStore, tmp_path: Path) -> None:
    expected = _put_corpus(project, store, "demo-train", tmp_path)
    messages: list[str] = []
    (result,) = run_pipelines(project, store, ["demo-train-validate"], messages.append)
    assert result.status == "ran" and result.datums == 1
    commit = result.commit
    summary = json.loads(store.read("demo-train-validate", "master", "summary.json"))
    bad = {p: r for p, r in expected.items() if r}
    assert summary["total"] == len(expected)
    assert summary["kept"] == len(expected) - len(bad)
    assert {d["path"]: d["reason"] for d in summary["discarded_items"]} == bad
    kept = set(store.list_files("demo-train-validate", "master")) - {"summary.json"}
    assert kept == {p for p, r in expected.items() if not r}
    train = store.resolve("demo-train", "master")
    pipeline = load_pipelines(project.root)["demo-train-validate"]
    assert commit.provenance.inputs == (CommitRef("demo-train", train.id),)
    assert commit.provenance.spec_hash == run_hash(pipeline, project)

    # unchanged inputs and spec: a no-op
    (again,) = run_pipelines(project, store, ["demo-train-validate"], messages.append)
    assert again.status == "up-to-date" and again.commit.id == commit.id
    assert "up to date" in messages[-1]

    # a new input commit: runs again
    store.put("demo-train", "master", {"sport/1.txt": b"y" * 100})
    (third,) = run_pipelines(project, store, ["demo-train-validate"], _quiet)
    assert third.status == "ran" and third.commit.parent == commit.id

    # a changed step file changes the run hash: runs again
    step = project.root / "data" / "validate.py"
    step.write_text(step.read_text() + "\n# changed\n")
    (fourth,) = run_pipelines(project, store, ["demo-train-validate"], _quiet)
    assert fourth.status == "ran"

    # changed validation settings: runs again, with the new rules
    config = project.root / "cdl.yaml"
    config.write_text(config.read_text().replace("min_chars: 40", "min_chars: 1"))
    relaxed = load_settings(config, "local")
    (fifth,) = run_pipelines(relaxed, store, ["demo-train-validate"], _quiet)
    assert fifth.status == "ran"
    summary = json.loads(store.read("demo-train-validate", "master", "summary.json"))
    assert "too_short" not in summary["reasons"]


def test_waiting_for_missing_inputs(project: Settings, store: LocalStore) -> None:
    results = run_pipelines(project, store, None, _quiet)
    assert {r.status for r in results} == {"waiting"}
    # validate pipelines run before the store-labels pipelines that read their output
    names = [r.pipeline for r in results]
    assert names.index("demo-train-validate") < names.index("demo-train-store-labels")


def test_glob_datums() -> None:
    files = ["a/1", "a/2", "b/1", "top.txt"]
    assert glob_datums(files, "/") == [files]
    assert glob_datums(files, "/*") == [["a/1", "a/2"], ["b/1"], ["top.txt"]]
    assert glob_datums(files, "/*/*") == [["a/1"], ["a/2"], ["b/1"]]
    assert glob_datums(files, "/a*") == [["a/1", "a/2"]]
    assert glob_datums([], "/") == []


STEP = """
import json, os, pathlib
root = pathlib.Path(os.environ["CDL_PFS_ROOT"])
files = [p for p in root.rglob("*") if p.is_file() and p.parts[len(root.parts)] != "out"]
seen = sorted(str(p.relative_to(root)) for p in files)
left = "-".join(sorted(p.name for p in (root / "left").iterdir()))
right = "-".join(sorted(p.name for p in (root / "right").iterdir()))
record = {"seen": seen, "left_commit": os.environ["left_COMMIT"],
          "pipeline": os.environ["PPS_PIPELINE_NAME"]}
(root / "out" / f"{left}_{right}.json").write_text(json.dumps(record))
if os.environ.get("FAIL"):
    raise SystemExit(3)
"""


def _custom(
    project: Settings, store: LocalStore, input_node: dict, env: dict | None = None
) -> None:
    (project.root / "data" / "step.py").write_text(STEP)
    spec = {
        "pipeline": {"name": "custom"},
        "input": input_node,
        "transform": {"image": "x/data:1", "cmd": ["python", "data/step.py"], "env": env or {}},
    }
    (project.root / "data" / "pipelines" / "custom.json").write_text(json.dumps(spec))
    repos = {"l": {"a/1": b"1", "a/2": b"2", "b/1": b"3"}, "r": {"x": b"", "y": b""}}
    for repo, files in repos.items():
        store.create_repo(repo)
        store.put(repo, "master", files)


def test_cross_of_globbed_inputs(project: Settings, store: LocalStore) -> None:
    node = {
        "cross": [
            {"pfs": {"name": "left", "repo": "l", "glob": "/*"}},
            {"pfs": {"name": "right", "repo": "r", "glob": "/*", "empty_files": True}},
        ]
    }
    _custom(project, store, node)
    (result,) = run_pipelines(project, store, ["custom"], _quiet)
    assert result.datums == 4
    outputs = sorted(store.list_files("custom", "master"))
    assert outputs == ["a_x.json", "a_y.json", "b_x.json", "b_y.json"]
    record = json.loads(store.read("custom", "master", "a_x.json"))
    assert record["seen"] == ["left/a/1", "left/a/2", "right/x"]
    assert record["left_commit"] == store.resolve("l", "master").id
    assert record["pipeline"] == "custom"


def test_union(project: Settings, store: LocalStore) -> None:
    node = {
        "union": [
            {"pfs": {"name": "left", "repo": "l", "glob": "/*"}},
            {"pfs": {"name": "left", "repo": "l", "glob": "/a/*"}},
        ]
    }
    _custom(project, store, node)
    (project.root / "data" / "step.py").write_text(
        "import os, pathlib\nroot = pathlib.Path(os.environ['CDL_PFS_ROOT'])\n"
        "files = sorted(str(p.relative_to(root / 'left')) for p in (root / 'left').rglob('*') "
        "if p.is_file())\n"
        "(root / 'out' / ('_'.join(files).replace('/', '.'))).write_text('x')\n"
    )
    (result,) = run_pipelines(project, store, ["custom"], _quiet)
    assert result.datums == 4
    assert store.list_files("custom", "master") == ["a.1", "a.1_a.2", "a.2", "b.1"]


def test_failing_step_makes_no_commit(project: Settings, store: LocalStore) -> None:
    node = {
        "cross": [
            {"pfs": {"name": "left", "repo": "l", "glob": "/"}},
            {"pfs": {"name": "right", "repo": "r", "glob": "/"}},
        ]
    }
    _custom(project, store, node, env={"FAIL": "1"})
    with pytest.raises(DataError, match="failed with exit code 3"):
        run_pipelines(project, store, ["custom"], _quiet)
    assert store.head("custom", "master") is None
