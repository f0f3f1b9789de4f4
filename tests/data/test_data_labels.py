"""The labels table on SQLite and on the real PostgreSQL: import, idempotency, bad entries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.commits import DataVersion
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.labeling import import_payload
from cdl_gitlab.data.labels import FOLDER_LABELER, LabelStore, database_url, folder_labels

VERSION = DataVersion("demo-train-validate", "master", "c0ffee")


def entry(task_id: Any, path: str, label: str, **overrides: Any) -> dict[str, Any]:
    annotation = {
        "id": 1,
        "completed_by": {"id": 3, "email": "ann@example.org"},
        "created_at": "2026-01-02T03:04:05.000Z",
        "was_cancelled": False,
        "result": [
            {
                "from_name": "label",
                "to_name": "item",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ],
    }
    annotation.update(overrides.pop("annotation", {}))
    item = {"id": task_id, "data": {"text": "...", "path": path}, "annotations": [annotation]}
    item.update(overrides)
    return item


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def label_settings(
    request: pytest.FixtureRequest,
    make_project: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Settings]:
    settings = make_project()
    if request.param == "sqlite":
        yield settings
        return
    with request.getfixturevalue("postgres_server").database() as url:
        monkeypatch.setenv("CDL_POSTGRES_DSN", url)
        yield load_settings(settings.root / "cdl.yaml", "cluster")


def _rows(settings: Settings, split: str = "train") -> list[Any]:
    labels = LabelStore.open(settings)
    try:
        return labels.rows(split)
    finally:
        labels.close()


def test_import_is_idempotent_and_updates(label_settings: Settings) -> None:
    export = [entry(1, "business/001.txt", "business"), entry(2, "sport/002.txt", "sport")]
    first = import_payload(label_settings, None, export, "train", VERSION)
    assert (first.inserted, first.updated, first.unchanged, first.rejected) == (2, 0, 0, [])
    again = import_payload(label_settings, None, export, "train", VERSION)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    export[1] = entry(2, "sport/002.txt", "tech")
    changed = import_payload(label_settings, None, export, "train", VERSION)
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 1)
    rows = _rows(label_settings)
    assert [(r.id, r.file_path, r.label, r.labeler) for r in rows] == [
        ("1", "business/001.txt", "business", "ann@example.org"),
        ("2", "sport/002.txt", "tech", "ann@example.org"),
    ]
    assert rows[0].created == "2026-01-02T03:04:05+00:00"
    assert (rows[0].data_repo, rows[0].data_branch, rows[0].data_commit) == (
        "demo-train-validate",
        "master",
        "c0ffee",
    )
    assert _rows(label_settings, "test") == []  # per split


def test_malformed_entries_are_rejected_one_by_one(label_settings: Settings) -> None:
    export: list[Any] = [
        entry(1, "business/001.txt", "business"),
        "not an object",
        entry(None, "a/b.txt", "business"),
        {"id": 4, "annotations": []},
        entry(5, "", "business"),
        entry(6, "sport/6.txt", "sport", annotations=[]),
        entry(7, "sport/7.txt", "sport", annotation={"was_cancelled": True}),
        entry(8, "sport/8.txt", "sport", annotation={"result": []}),
        entry(9, "sport/9.txt", "weather"),
        entry(10, "sport/10.txt", "sport", annotation={"created_at": "yesterday"}),
        entry(11, "sport/11.txt", "sport", annotation={"completed_by": None}),
        entry(
            12,
            "sport/12.txt",
            "sport",
            annotation={"result": [{"type": "choices", "value": {"choices": ["sport", "tech"]}}]},
        ),
    ]
    report = import_payload(label_settings, None, export, "train", VERSION)
    assert report.inserted == 1
    assert len(report.rejected) == 11
    text = "\n".join(report.rejected)
    for expected in (
        "entry 1: not an object",
        "entry 2: no task id",
        "entry 3 (task 4): no data",
        "(task 5): data.path",
        "(task 6): no (non-cancelled) annotation",
        "(task 7): no (non-cancelled)",
        "(task 8): the annotation has no single",
        "(task 9): label 'weather' is not one of",
        "(task 10): no valid created_at",
        "(task 11): no labeler",
        "(task 12): the annotation has no single choice",
    ):
        assert expected in text


def test_version_from_the_entry_wins_and_is_required(label_settings: Settings) -> None:
    item = entry(1, "business/001.txt", "business")
    item["data"].update(repo="r", branch="b", commit="c")
    assert import_payload(label_settings, None, [item], "train", None).inserted == 1
    assert _rows(label_settings)[0].data_commit == "c"
    missing = import_payload(label_settings, None, [entry(2, "a/b.txt", "sport")], "train", None)
    assert "no data version" in missing.rejected[0]


def test_folder_labels_roundtrip(label_settings: Settings) -> None:
    files = {"business/1.txt": b"one", "tech/2.txt": b"two"}
    export = folder_labels(files, "text", VERSION, "2026-05-01T00:00:00+00:00")
    assert json.loads(json.dumps(export))[0]["data"]["text"] == "one"
    report = import_payload(label_settings, None, export, "test", VERSION)
    assert report.inserted == 2 and not report.rejected
    rows = _rows(label_settings, "test")
    assert {(r.file_path, r.label, r.labeler) for r in rows} == {
        ("business/1.txt", "business", FOLDER_LABELER),
        ("tech/2.txt", "tech", FOLDER_LABELER),
    }
    assert import_payload(label_settings, None, export, "test", VERSION).unchanged == 2


def test_export_must_be_a_list(label_settings: Settings) -> None:
    with pytest.raises(DataError, match="list of tasks"):
        import_payload(label_settings, None, {"id": 1}, "train", VERSION)


def test_database_urls(
    make_project: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = make_project()
    assert database_url(settings) == f"sqlite:///{settings.state_dir / 'labels.sqlite'}"
    cluster = load_settings(settings.root / "cdl.yaml", "cluster")
    monkeypatch.delenv("CDL_POSTGRES_DSN", raising=False)
    with pytest.raises(Exception, match="CDL_POSTGRES_DSN"):
        database_url(cluster)
    monkeypatch.setenv("CDL_POSTGRES_DSN", "postgresql://u@h:5432/db")
    assert database_url(cluster) == "postgresql+psycopg://u@h:5432/db"


def test_conflicting_labels_are_reported_and_the_latest_kept(label_settings: Settings) -> None:
    later = {"completed_by": {"email": "bob@example.org"}, "created_at": "2026-01-03T00:00:00Z"}
    disagree = entry(1, "business/001.txt", "business")
    disagree["annotations"].insert(0, entry(1, "x", "sport", annotation=later)["annotations"][0])
    export = [disagree, entry(2, "sport/002.txt", "sport")]
    report = import_payload(label_settings, None, export, "train", VERSION)
    assert (report.inserted, report.rejected) == (2, [])
    assert report.conflicts == [
        "task 1 (business/001.txt): annotations disagree: 'business' by ann@example.org "
        "(2026-01-02T03:04:05.000Z), 'sport' by bob@example.org (2026-01-03T00:00:00Z); "
        "kept 'sport' (the latest)"
    ]
    assert "1 conflicts" in str(report)
    assert [r.label for r in _rows(label_settings)] == ["sport", "sport"]

    # a re-import changing a label: an older annotation loses, a newer one wins
    older = entry(2, "sport/002.txt", "tech", annotation={"created_at": "2025-12-31T00:00:00Z"})
    stale = import_payload(label_settings, None, [older], "train", VERSION)
    assert (stale.updated, stale.unchanged) == (0, 1)
    assert stale.conflicts == [
        "task 2 (sport/002.txt): stored label 'sport' by ann@example.org "
        "(2026-01-02T03:04:05+00:00), imported 'tech' by ann@example.org "
        "(2025-12-31T00:00:00+00:00); kept 'sport' (the latest)"
    ]
    newer = entry(2, "sport/002.txt", "tech", annotation=later)
    fresh = import_payload(label_settings, None, [newer], "train", VERSION)
    assert (fresh.updated, len(fresh.conflicts)) == (1, 1)
    assert fresh.conflicts[0].endswith("kept 'tech' (the latest)")
    assert [(r.label, r.labeler) for r in _rows(label_settings)] == [
        ("sport", "bob@example.org"),
        ("tech", "bob@example.org"),
    ]
