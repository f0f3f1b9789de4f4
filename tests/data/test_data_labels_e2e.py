"""Labels end to end: labelers' Label Studio exports in data/labels/ -> `cdl data pipeline` ->
the labels table, on SQLite (local profile) and on the real PostgreSQL (cluster profile)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from data_helpers import CLASSES, make_corpus

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.labeling import export_tasks
from cdl_gitlab.data.labels import FOLDER_LABELER, LabelStore
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.stores.local_store import LocalStore

LABELER = {"id": 3, "email": "ann@example.org", "first_name": "Ann", "last_name": ""}


def annotated(task: dict[str, Any], label: str, when: dt.datetime, ann_id: int) -> dict[str, Any]:
    """A task as Label Studio's JSON export lists it after one labeler chose ``label``."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        **task,
        "annotations": [
            {
                "id": ann_id,
                "completed_by": LABELER,
                "result": [
                    {
                        "id": f"r{ann_id}",
                        "type": "choices",
                        "value": {"choices": [label]},
                        "origin": "manual",
                        "to_name": "item",
                        "from_name": "label",
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": stamp,
                "updated_at": stamp,
                "lead_time": 4.2,
                "task": task["id"],
                "project": 1,
                "updated_by": LABELER["id"],
            }
        ],
        "drafts": [],
        "predictions": [],
        "meta": {},
        "created_at": stamp,
        "updated_at": stamp,
        "project": 1,
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def news(
    request: pytest.FixtureRequest,
    make_project: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Settings]:
    """A project with the rendered news data/ folder on a generated BBC-layout corpus."""
    make_corpus(tmp_path / "corpus", per_class=12, bad=False)
    settings = make_project(source=str(tmp_path / "corpus"))
    if request.param == "sqlite":
        yield settings
        return
    with request.getfixturevalue("postgres_server").database() as url:
        monkeypatch.setenv("CDL_POSTGRES_DSN", url)
        yield load_settings(settings.root / "cdl.yaml", "cluster")


@pytest.mark.slow
def test_pipeline_imports_label_studio_exports(news: Settings) -> None:
    store = LocalStore(news.state_dir / "data")
    pipeline.run_all(news, store, lambda line: None)  # the split; folder labels at first
    labels = LabelStore.open(news)
    try:
        folder = {s: {r.file_path: r for r in labels.rows(s)} for s in ("train", "test")}
        assert {r.labeler for rows in folder.values() for r in rows.values()} == {FOLDER_LABELER}

        # the labelers' exports, made from the split's tasks as Label Studio exports them;
        # they relabel one train item to another class
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # before the folder labels (commit time)
        exports = {s: export_tasks(news, store, s) for s in ("train", "test")}
        relabelled = exports["train"][0]["data"]["path"]
        moved = next(c for c in CLASSES if not relabelled.startswith(c + "/"))
        (news.root / "data" / "labels").mkdir()
        for split, tasks in exports.items():
            payload = [
                annotated(t, moved if path == relabelled else path.split("/")[0], now, i)
                for i, t in enumerate(tasks, start=1)
                for path in [t["data"]["path"]]
            ]
            (news.root / "data" / "labels" / f"{split}.json").write_text(json.dumps(payload))

        out: list[str] = []
        pipeline.run_all(news, store, out.append)
        text = "\n".join(out)
        assert "labels (train): Label Studio export data/labels/train.json" in text
        conflicts = [line for line in text.splitlines() if "conflict " in line]
        task = exports["train"][0]["id"]
        assert len(conflicts) == 1, text
        assert f"task {task} ({relabelled}): stored label '{relabelled.split('/')[0]}'" in text
        assert f"imported '{moved}' by ann@example.org" in conflicts[0]
        assert conflicts[0].endswith(f"kept '{moved}' (a person's label over a generated one)")
        assert "1 conflicts" in text and "0 rejected" in text

        for split, tasks in exports.items():
            rows = {r.file_path: r for r in labels.rows(split)}
            assert set(rows) == {t["data"]["path"] for t in tasks} == set(folder[split])
            assert {r.labeler for r in rows.values()} == {"ann@example.org"}
            for path, row in rows.items():
                expected = moved if path == relabelled else path.split("/")[0]
                assert row.label == expected
                assert row.data_commit == store.resolve(f"demo-{split}-validate", "master").id

        rows_train = labels.rows("train")
        again: list[str] = []
        pipeline.run_all(news, store, again.append)
        assert ": conflict " not in "\n".join(again)  # a rerun changes nothing
        assert [r.label for r in labels.rows("train")] == [r.label for r in rows_train]
    finally:
        labels.close()


def test_cli_labels_dir_and_conflict_lines(
    make_project: Callable[..., Settings], tmp_path: Path
) -> None:
    """`cdl data pipeline --labels-dir` imports from that folder; a task whose annotations
    disagree is one `conflict` line there and in `cdl data labels import`, the latest kept."""
    from click.testing import CliRunner

    from cdl_gitlab.cli import cli
    from cdl_gitlab.cli.data_cmd import data

    if "data" not in cli.commands:
        cli.add_command(data)
    make_corpus(tmp_path / "corpus", per_class=12, bad=False)
    settings = make_project(source=str(tmp_path / "corpus"))

    def invoke(*args: str) -> Any:
        config = ["--config", str(settings.root / "cdl.yaml"), "data"]
        return CliRunner(mix_stderr=False).invoke(cli, [*config, *args], catch_exceptions=False)

    assert invoke("pipeline").exit_code == 0
    store = LocalStore(settings.state_dir / "data")
    tasks = export_tasks(settings, store, "train")
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    payload = [annotated(t, t["data"]["path"].split("/")[0], first, i) for i, t in enumerate(tasks)]
    path = tasks[0]["data"]["path"]
    other = next(c for c in CLASSES if not path.startswith(c + "/"))
    second = annotated(tasks[0], other, first + dt.timedelta(hours=1), 999)["annotations"]
    payload[0]["annotations"].extend(second)  # a second labeler disagrees, later
    (settings.root / "exports").mkdir()
    export = settings.root / "exports" / "train.json"
    export.write_text(json.dumps(payload))

    result = invoke("pipeline", "--labels-dir", "exports")
    assert result.exit_code == 0, result.stderr
    assert "labels (train): Label Studio export exports/train.json" in result.stdout
    assert f"task {tasks[0]['id']} ({path}): annotations disagree: " in result.stdout
    assert "labels (test): folder labels of" in result.stdout  # no exports/test.json
    # what the data-labels CI job runs after the data-pipeline job: nothing to do
    skipped = invoke("labels", "import", str(export), "--split", "train", "--skip-imported")
    assert skipped.exit_code == 0, skipped.stderr
    assert f"labels (train): {export} already imported (sha256 " in skipped.stdout
    assert "conflict" not in skipped.stderr
    again = invoke("labels", "import", str(export), "--split", "train")
    assert again.exit_code == 0
    conflict_lines = [line for line in again.stderr.splitlines() if line.startswith("conflict")]
    assert len(conflict_lines) == 1 and conflict_lines[0].endswith(f"kept '{other}' (the latest)")
    assert f"labels (train): 0 inserted, 0 updated, {len(tasks)} unchanged" in again.stdout
    labels = LabelStore.open(settings)
    try:
        assert {r.file_path: r.label for r in labels.rows("train")}[path] == other
    finally:
        labels.close()
    # a changed export is imported; so is the same one once the table lost rows
    export.write_text(json.dumps(payload[1:]))
    changed = invoke("labels", "import", str(export), "--split", "train", "--skip-imported")
    assert f"labels (train): 0 inserted, 0 updated, {len(tasks) - 1} unchanged" in changed.stdout
    assert (
        "already imported"
        in invoke("labels", "import", str(export), "--split", "train", "--skip-imported").stdout
    )
    labels = LabelStore.open(settings)
    try:
        with labels.engine.begin() as conn:
            conn.execute(labels.table.delete().where(labels.table.c.file_path == path))
    finally:
        labels.close()
    recounted = invoke("labels", "import", str(export), "--split", "train", "--skip-imported")
    assert "already imported" not in recounted.stdout
