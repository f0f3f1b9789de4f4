"""The data job waits for the cluster's pipelines: output commits of the input's commit set,
through the real pachyderm-sdk Client against the fake pachd (a job "runs" when the test says)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from data_helpers import make_corpus

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.pachyderm import wait
from cdl_gitlab.data.pachyderm.create_pipelines import deploy_pipelines
from cdl_gitlab.data.steps.pipeline import run_all, run_or_wait
from cdl_gitlab.data.stores.pachyderm_store import PachydermStore
from fakes.pachd import FakePachd

VALIDATE = "demo-train-validate"


@pytest.fixture
def cluster(
    project: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, PachydermStore, FakePachd]]:
    """The project's pipelines deployed on a fake pachd; settings of the cluster profile."""
    pachd = FakePachd().start()
    monkeypatch.setenv("CDL_IMAGE_TAG", "feedbeef")
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/demo")
    monkeypatch.setattr(wait, "POLL_SECONDS", 0.01)
    store = PachydermStore.from_address(pachd.address)
    deploy_pipelines(project, store)  # creates demo-train & co. first
    try:
        yield load_settings(project.root / "cdl.yaml", "cluster"), store, pachd
    finally:
        pachd.stop()


def job_runs_when_waited(pachd: FakePachd, lines: list[str], error: str = "") -> Callable:
    """An echo that records lines and lets the pipeline's job run at the first wait."""

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("waiting for") and len(lines) == 1:
            pachd.run_job(VALIDATE, error)

    return echo


def test_waits_until_the_output_commit_of_the_input_is_finished(
    cluster: tuple[Settings, PachydermStore, FakePachd],
) -> None:
    settings, store, pachd = cluster
    commit = store.put("demo-train", "master", {"business/1.txt": b"text"}, "split")
    assert not pachd.repos[VALIDATE].commits[commit.id].finished  # no job ran yet
    lines: list[str] = []
    run_or_wait(settings, store, {VALIDATE: commit.id}, job_runs_when_waited(pachd, lines))
    assert lines == [
        f"waiting for {VALIDATE} (commit {commit.id[:12]}, 0s)",
        f"{VALIDATE}: output commit {commit.id[:12]} finished",
    ]
    assert pachd.repos[VALIDATE].commits[commit.id].finished
    assert not pachd.repos[VALIDATE].commits[commit.id].error


def test_a_finished_older_output_does_not_count_and_the_wait_times_out(
    cluster: tuple[Settings, PachydermStore, FakePachd],
) -> None:
    _, store, pachd = cluster
    old = store.put("demo-train", "master", {"a/1.txt": b"1"}, "split 1")
    assert pachd.run_job(VALIDATE) == [old.id]
    new = store.put("demo-train", "master", {"a/1.txt": b"2"}, "split 2")
    lines: list[str] = []
    with pytest.raises(DataError) as caught:
        wait.wait_for_outputs(store, [VALIDATE], new.id, 0.2, lines.append, poll=0.05)
    assert str(caught.value) == (
        f"timed out after 0.2s waiting for {VALIDATE} to finish commit {new.id} "
        f"(cluster.pipeline_wait_timeout in cdl.yaml); see `pachctl list job {new.id}`"
    )
    assert lines and all(line.startswith(f"waiting for {VALIDATE}") for line in lines)
    wait.wait_for_outputs(store, [VALIDATE], old.id, 0.2, lines.append)  # that one is done


def test_a_failed_job_is_a_clear_error(
    cluster: tuple[Settings, PachydermStore, FakePachd],
) -> None:
    settings, store, pachd = cluster
    commit = store.put("demo-train", "master", {"a/1.txt": b"1"}, "split")
    lines: list[str] = []
    echo = job_runs_when_waited(pachd, lines, error="datum failed: exit code 1")
    with pytest.raises(DataError) as caught:
        run_or_wait(settings, store, {VALIDATE: commit.id}, echo)
    assert str(caught.value) == (
        f"pipeline {VALIDATE} failed on commit {commit.id}: datum failed: exit code 1; see "
        f"`pachctl list job {commit.id}` and `pachctl logs --pipeline {VALIDATE}`"
    )


def test_the_timeout_is_a_config_key(project: Settings) -> None:
    text = (project.root / "cdl.yaml").read_text() + "cluster: {pipeline_wait_timeout: 42}\n"
    (project.root / "cdl.yaml").write_text(text)
    cluster = load_settings(project.root / "cdl.yaml", "cluster").config.cluster
    assert cluster.pipeline_wait_timeout == 42
    assert project.config.cluster.pipeline_wait_timeout == 1800  # the default


def test_the_data_pipeline_waits_for_the_cluster_before_labels_and_summary(
    cluster: tuple[Settings, PachydermStore, FakePachd], tmp_path: Path
) -> None:
    """`cdl data pipeline` on Pachyderm: split -> wait for *-validate (the fake job writes the
    split's files and a summary) -> labels -> wait for *-store-labels -> the summary."""
    settings, store, pachd = cluster
    make_corpus(tmp_path / "corpus", per_class=12, bad=False)
    config = settings.root / "cdl.yaml"
    config.write_text(config.read_text().replace('source: ""', f'source: "{tmp_path}/corpus"'))
    settings = load_settings(config, "cluster")
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if not line.startswith("waiting for "):
            return
        name = line.split()[2]
        if name.endswith("-validate"):
            source = name.removesuffix("-validate")
            files = {p: store.read(source, "master", p) for p in store.list_files(source, "master")}
            summary = {"total": len(files), "kept": len(files), "discarded": 0}
            summary |= {"reasons": {}, "repaired": {}, "discarded_items": []}
            pachd.run_job(name, files={**files, "summary.json": json.dumps(summary).encode()})
        else:
            pachd.run_job(name, files={"labels-import.json": b"{}"})

    summary = run_all(settings, store, echo)
    split_ids = {s: store.resolve(f"demo-{s}", "master").id for s in ("train", "test")}
    labels_ids = {s: store.resolve(f"demo-{s}-labels", "master").id for s in ("train", "test")}
    waits = [line for line in lines if line.startswith("waiting for ") or "output commit" in line]
    assert waits == [
        f"waiting for demo-train-validate (commit {split_ids['train'][:12]}, 0s)",
        f"demo-train-validate: output commit {split_ids['train'][:12]} finished",
        f"waiting for demo-test-validate (commit {split_ids['test'][:12]}, 0s)",
        f"demo-test-validate: output commit {split_ids['test'][:12]} finished",
        f"waiting for demo-train-store-labels (commit {labels_ids['train'][:12]}, 0s)",
        f"demo-train-store-labels: output commit {labels_ids['train'][:12]} finished",
        f"waiting for demo-test-store-labels (commit {labels_ids['test'][:12]}, 0s)",
        f"demo-test-store-labels: output commit {labels_ids['test'][:12]} finished",
    ]
    assert lines.index(waits[1]) < next(i for i, x in enumerate(lines) if x.startswith("labels"))
    assert summary["train"]["kept"] + summary["test"]["kept"] == 36
