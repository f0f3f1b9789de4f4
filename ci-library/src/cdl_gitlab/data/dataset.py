"""What training reads: labels joined with the validated files at one data commit."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cdl_gitlab.data.commits import Commit, DataVersion
from cdl_gitlab.data.errors import MissingDataError
from cdl_gitlab.data.labeling import validated_commit, validated_files
from cdl_gitlab.data.labels import LabelStore, table_name
from cdl_gitlab.data.names import check_split, validated_repo
from cdl_gitlab.data.steps.validate import SUMMARY_FILE
from cdl_gitlab.data.stores import DataStore, open_store

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelsVersion:
    """Which labels were used: the table, how many rows and a digest of (id, path, label)."""

    table: str
    count: int
    digest: str


@dataclass
class LabeledSplit:
    split: str
    items: list[tuple[str, str, bytes]]  # (path, label, content)
    classes: list[str]
    version: DataVersion
    labels_version: LabelsVersion
    unlabeled: list[str] = field(default_factory=list)
    """Validated files that have no label (not in ``items``)."""
    missing_files: list[str] = field(default_factory=list)
    """Labelled paths that are not at the data commit."""
    unknown_labels: list[str] = field(default_factory=list)
    """Paths whose label is not one of ``model.classes``."""


def require_items(
    settings: Settings, split: str, ref: str | None = None, store: DataStore | None = None
) -> Commit:
    """The validated commit of ``split`` at ``ref``; :class:`MissingDataError` (what is
    missing and the command to run) when nothing was validated yet or the split is empty.

    Reads the file list only (no contents): a cheap check before training starts.
    """
    store = store or open_store(settings)
    repo = validated_repo(settings, check_split(split))
    if repo not in store.list_repos():
        raise MissingDataError(
            f"no {split} data: the data repo {repo} does not exist (nothing collected and "
            "validated yet); run `cdl data pipeline`"
        )
    commit = validated_commit(settings, store, split, ref)
    if not any(path != SUMMARY_FILE for path in store.list_files(repo, commit.id)):
        raise MissingDataError(
            f"no {split} data: the validated {split} split {repo}@{commit.id[:12]} has no "
            "items (validation kept none); run `cdl data pipeline` and fix what it reports"
        )
    return commit


def load_split(
    settings: Settings, split: str, ref: str | None = None, store: DataStore | None = None
) -> LabeledSplit:
    """The labelled items of ``split`` at ``ref`` (branch or commit; default ``data.branch``)."""
    check_split(split)
    store = store or open_store(settings)
    commit, files = validated_files(settings, store, split, ref)
    labels = LabelStore.open(settings)
    try:
        rows = labels.rows(split)
    finally:
        labels.close()
    latest: dict[str, tuple[str, str, str]] = {}  # path -> (created, id, label)
    for row in rows:
        candidate = (row.created, row.id, row.label)
        if row.file_path not in latest or candidate > latest[row.file_path]:
            latest[row.file_path] = candidate
    configured = list(settings.config.model.classes)
    classes = configured or sorted({label for _, _, label in latest.values()})
    result = LabeledSplit(
        split, [], classes, DataVersion.of(commit), LabelsVersion(table_name(settings), 0, "")
    )
    digest = hashlib.sha256()
    for path in sorted(files):
        entry = latest.get(path)
        if entry is None:
            result.unlabeled.append(path)
            continue
        _created, task_id, label = entry
        if label not in classes:
            result.unknown_labels.append(path)
            continue
        result.items.append((path, label, files[path]))
        digest.update(f"{task_id}\0{path}\0{label}\n".encode())
    result.missing_files = sorted(set(latest) - set(files))
    result.labels_version = LabelsVersion(
        table_name(settings), len(result.items), digest.hexdigest()
    )
    if result.unlabeled or result.missing_files or result.unknown_labels:
        log.warning(
            "%s split at %s: %d labelled items; %d files without a label, %d labels for files "
            "not in the commit, %d labels outside the classes",
            split,
            result.version,
            len(result.items),
            len(result.unlabeled),
            len(result.missing_files),
            len(result.unknown_labels),
        )
    return result
