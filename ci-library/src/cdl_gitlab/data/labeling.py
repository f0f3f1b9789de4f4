"""Labeling operations on a project: tasks for labelers, folder labels, imports, the step."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.commits import Commit, DataVersion
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats import open_format
from cdl_gitlab.data.labels import (
    ImportReport,
    LabelStore,
    dumps,
    import_export,
    table_name,
    task_for,
)
from cdl_gitlab.data.names import check_split, validated_repo
from cdl_gitlab.data.steps.validate import SUMMARY_FILE
from cdl_gitlab.fsutil import atomic_write_json

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.base import DataStore


def validated_commit(
    settings: Settings, store: DataStore, split: str, ref: str | None = None
) -> Commit:
    """The commit of the validated ``split`` at ``ref`` (default: ``data.branch``)."""
    repo = validated_repo(settings, check_split(split))
    return store.resolve(repo, ref or settings.config.data.branch)


def validated_files(
    settings: Settings, store: DataStore, split: str, ref: str | None = None
) -> tuple[Commit, dict[str, bytes]]:
    """The validated items of a split at ``ref`` (default: ``data.branch``), without summary."""
    commit = validated_commit(settings, store, split, ref)
    files = store.read_many(commit.repo, commit.id)
    files.pop(SUMMARY_FILE, None)
    return commit, files


def export_tasks(settings: Settings, store: DataStore, split: str) -> list[dict[str, Any]]:
    commit, files = validated_files(settings, store, split)
    version = DataVersion.of(commit)
    task = settings.config.model.task
    return [task_for(path, files[path], task, version) for path in sorted(files)]


def generate_export(settings: Settings, store: DataStore, split: str) -> list[dict[str, Any]]:
    """The labels the project's ``data.format`` knows (class folders, idx label files ...)
    for the validated items of ``split``, as a Label Studio export."""
    commit, files = validated_files(settings, store, split)
    return open_format(settings).label_export(store, commit, files, split)


IMPORTS_FILE = "labels-imports.json"
"""Under ``state_dir``: the last export imported into each labels table and split."""


@dataclass(frozen=True)
class LastImport:
    """The digest of the last export imported into a table's split, and the row count after."""

    digest: str
    rows: int


def export_digest(payload: Any) -> str:
    """The SHA-256 of an export's canonical bytes (:func:`cdl_gitlab.data.labels.dumps`)."""
    return hashlib.sha256(dumps(payload)).hexdigest()


def _imports(settings: Settings) -> dict[str, Any]:
    path = settings.state_dir / IMPORTS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def already_imported(settings: Settings, payload: Any, split: str) -> LastImport | None:
    """The record of ``payload`` when it is the last export imported into ``split``'s table
    and the table still has the rows it had then (else None: importing it may change rows)."""
    entry = _imports(settings).get(f"{table_name(settings)}/{split}")
    if not isinstance(entry, dict) or entry.get("digest") != export_digest(payload):
        return None
    labels = LabelStore.open(settings)
    try:
        rows = labels.count(split)
    finally:
        labels.close()
    return LastImport(entry["digest"], rows) if rows == entry.get("rows") else None


def import_payload(
    settings: Settings,
    store: DataStore | None,
    payload: Any,
    split: str,
    version: DataVersion | None = None,
) -> ImportReport:
    """Import an export; entries without a data version get ``version`` or the validated head.
    The export's digest is recorded as the split's last import (:func:`already_imported`)."""
    if version is None and store is not None:
        repo = validated_repo(settings, check_split(split))
        head = store.head(repo, settings.config.data.branch) if repo in store.list_repos() else None
        version = DataVersion.of(head) if head else None
    labels = LabelStore.open(settings)
    try:
        classes = list(settings.config.model.classes)
        report = import_export(labels, payload, split, version, classes)
        rows = labels.count(split)
    finally:
        labels.close()
    record = _imports(settings)
    record[f"{table_name(settings)}/{split}"] = {"digest": export_digest(payload), "rows": rows}
    atomic_write_json(settings.state_dir / IMPORTS_FILE, record)
    return report


def read_export(path: Path) -> list[Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable Label Studio JSON export: {exc}") from exc
    if not isinstance(payload, list):
        raise DataError(f"{path}: a Label Studio JSON export is a list of tasks")
    return payload


@dataclass(frozen=True)
class StoredLabels:
    """What the ``*-store-labels`` step imported into the labels table of one split."""

    split: str
    report: ImportReport

    def __str__(self) -> str:
        lines = [f"store-labels: {line}" for line in self.report.lines()]
        return "\n".join([*lines, f"store-labels ({self.split}): {self.report}"])


def store_labels_step() -> StoredLabels:
    """The ``*-store-labels`` step: /pfs/labels/*.json -> the labels table; report in /pfs/out."""
    from cdl_gitlab.config import load_settings
    from cdl_gitlab.data.pachyderm.pfs import input_commit, pfs_path

    settings = load_settings()
    split = check_split(os.environ.get("CDL_SPLIT", ""))
    version = DataVersion(
        validated_repo(settings, split), settings.config.data.branch, input_commit("data")
    )
    total = ImportReport()
    for export in sorted(pfs_path("labels").rglob("*.json")):
        report = import_payload(
            settings, None, read_export(export), split, version if version.commit else None
        )
        total.add(report, f"{export.name}: ")
    out = pfs_path("out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "labels-import.json",
        {
            "split": split,
            "inserted": total.inserted,
            "updated": total.updated,
            "unchanged": total.unchanged,
            "rejected": total.rejected,
            "conflicts": total.conflicts,
        },
    )
    return StoredLabels(split, total)


__all__ = ["dumps", "export_tasks", "generate_export", "import_payload", "store_labels_step"]
