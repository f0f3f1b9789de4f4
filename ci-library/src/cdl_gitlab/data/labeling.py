"""Labeling operations on a project: tasks for labelers, folder labels, imports, the step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.labels import (
    ImportReport,
    LabelStore,
    dumps,
    folder_labels,
    import_export,
    task_for,
)
from cdl_gitlab.data.model import Commit, DataVersion
from cdl_gitlab.data.names import check_split, validated_repo
from cdl_gitlab.data.validate import SUMMARY_FILE
from cdl_gitlab.fsutil import atomic_write_json

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.store import DataStore


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
    """Folder-derived labels as a Label Studio export (dated by the data commit: stable);
    with ``data.format: idx`` the labels come from the idx label files instead."""
    commit, files = validated_files(settings, store, split)
    if settings.config.data.format == "idx":
        from cdl_gitlab.data.fashion import idx_export

        return idx_export(settings, commit, files, store, split)
    created = commit.created or "1970-01-01T00:00:00+00:00"
    return folder_labels(files, settings.config.model.task, DataVersion.of(commit), created)


def import_payload(
    settings: Settings,
    store: DataStore | None,
    payload: Any,
    split: str,
    version: DataVersion | None = None,
) -> ImportReport:
    """Import an export; entries without a data version get ``version`` or the validated head."""
    if version is None and store is not None:
        repo = validated_repo(settings, check_split(split))
        head = store.head(repo, settings.config.data.branch) if repo in store.list_repos() else None
        version = DataVersion.of(head) if head else None
    labels = LabelStore.open(settings)
    try:
        return import_export(labels, payload, split, version, list(settings.config.model.classes))
    finally:
        labels.close()


def read_export(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable Label Studio JSON export: {exc}") from exc


def store_labels_step() -> ImportReport:
    """The ``*-store-labels`` step: /pfs/labels/*.json -> the labels table; report in /pfs/out."""
    from cdl_gitlab.config import load_settings
    from cdl_gitlab.data.pfs import input_commit, pfs_path

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
        total.inserted += report.inserted
        total.updated += report.updated
        total.unchanged += report.unchanged
        total.rejected.extend(f"{export.name}: {message}" for message in report.rejected)
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
        },
    )
    for message in total.rejected:
        print(f"store-labels: rejected {message}")
    print(f"store-labels ({split}): {total}")
    return total


__all__ = ["dumps", "export_tasks", "generate_export", "import_payload", "store_labels_step"]
