"""The ``archive`` format: a folder or archive of ``<class>/<file>`` items.

Collect: the source (:mod:`cdl_gitlab.data.sources`) is a folder or a ``.zip`` / ``.tar.gz`` /
``.tgz`` / ``.tar`` archive of ``<class>/<file>`` folders; one common top folder is stripped,
and files outside a class folder (README, LICENSE ...) are skipped and reported.

Split: exact duplicates (same content hash) are removed first so that no item can be in both
sets: the first path (sorted) of each content is kept; a content that appears under two
different classes is ambiguous and dropped altogether. The split is stratified by class
folder: within each class (sorted by name) the sorted paths are shuffled with
``random.Random(seed)`` and ``n * test_ratio`` (rounded half up) go to test. Both commits carry
provenance: the raw commit and the hash of the split parameters.

Labels: each validated item is labelled by its class folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tarfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.commits import Commit, DataVersion, Provenance
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats.base import CollectResult, DataFormat, SplitResult
from cdl_gitlab.data.labels import folder_labels
from cdl_gitlab.data.names import raw_repo, split_repo
from cdl_gitlab.data.sources import configured_source, download, local_path

if TYPE_CHECKING:
    from cdl_gitlab.data.stores.base import DataStore

log = logging.getLogger(__name__)


@dataclass
class SourceItems:
    """The ``<class>/<file>`` items read from a source, and the paths skipped."""

    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


@dataclass
class ArchiveSplit:
    """The train and test items of a split, and the duplicates it removed."""

    train: dict[str, bytes] = field(default_factory=dict)
    test: dict[str, bytes] = field(default_factory=dict)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    conflicts: list[str] = field(default_factory=list)


def _add(collected: SourceItems, entries: list[tuple[str, bytes]]) -> None:
    names = [PurePosixPath(path) for path, _ in entries]
    tops = {p.parts[0] for p in names if p.parts}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in names)
    for path, (_, data) in zip(names, entries, strict=True):
        parts = path.parts[1:] if strip else path.parts
        if not parts or any(part in ("..", "") or part.startswith(".") for part in parts):
            collected.skipped.append(path.as_posix())
            continue
        if len(parts) < 2:
            log.info("skipped %s: not inside a <class>/ folder", path.as_posix())
            collected.skipped.append(path.as_posix())
            continue
        collected.files["/".join(parts)] = data


def read_source(path: Path) -> SourceItems:
    """The ``<class>/<file>`` items of a folder or an archive."""
    collected = SourceItems()
    entries: list[tuple[str, bytes]] = []
    if path.is_dir():
        for dirpath, _dirs, filenames in os.walk(path):
            for name in filenames:
                full = Path(dirpath, name)
                entries.append((full.relative_to(path).as_posix(), full.read_bytes()))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                    entries.append((info.filename, archive.read(info)))
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        entries.append((member.name, handle.read()))
    elif path.exists():
        raise DataError(f"{path}: not a folder, zip or tar archive of <class>/<file> items")
    else:
        raise DataError(f"{path}: no such file or folder")
    _add(collected, sorted(entries))
    return collected


def deduplicate(files: dict[str, bytes], result: ArchiveSplit) -> dict[str, bytes]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path in sorted(files):
        by_hash[hashlib.sha256(files[path]).hexdigest()].append(path)
    unique: dict[str, bytes] = {}
    for paths in by_hash.values():
        classes = {path.split("/", 1)[0] for path in paths}
        if len(classes) > 1:
            result.conflicts.extend(paths)
            continue
        unique[paths[0]] = files[paths[0]]
        result.duplicates.extend((dup, paths[0]) for dup in paths[1:])
    return unique


def split_files(files: dict[str, bytes], seed: int, test_ratio: float) -> ArchiveSplit:
    """Deduplicate, then split stratified by class; deterministic for the same inputs."""
    result = ArchiveSplit()
    unique = deduplicate(files, result)
    by_class: dict[str, list[str]] = defaultdict(list)
    for path in sorted(unique):
        by_class[path.split("/", 1)[0]].append(path)
    rng = random.Random(seed)
    for name in sorted(by_class):
        paths = by_class[name]
        rng.shuffle(paths)
        n_test = int(len(paths) * test_ratio + 0.5)
        for index, path in enumerate(paths):
            (result.test if index < n_test else result.train)[path] = unique[path]
    return result


class ArchiveFormat(DataFormat):
    """``data.format: archive``: ``<class>/<file>`` items, split by ``data.split``."""

    name = "archive"

    def source_path(self) -> Path:
        """The local file or folder to collect from (downloading ``data.source`` if needed)."""
        source = configured_source(self.settings)
        if not source:
            raise DataError(
                "no data source: set data.source or data.mirror in cdl.yaml, or CDL_DATA_MIRROR"
            )
        local = local_path(source)
        if local is not None:
            return local
        if source.startswith(("http://", "https://")):
            return download(source, self.settings.state_dir / "downloads")
        raise DataError(f"unsupported data source {source!r}: use http(s)://, file:// or a path")

    def collect(self, store: DataStore) -> CollectResult:
        path = self.source_path()
        collected = read_source(path)
        if not collected.files:
            raise DataError(f"{path}: no <class>/<file> items found")
        repo = raw_repo(self.settings)
        store.create_repo(repo, "raw data as collected")
        commit = store.put(
            repo,
            self.settings.config.data.branch,
            collected.files,
            f"collect {len(collected.files)} files from {path.name}",
        )
        skipped = f", skipped {len(collected.skipped)}: {', '.join(collected.skipped[:5])}"
        line = f"collect: {len(collected.files)} files -> {repo}@{commit.id[:12]}" + (
            skipped if collected.skipped else ""
        )
        return CollectResult(commit, (line,))

    def split(self, store: DataStore, ref: str | None = None) -> SplitResult:
        data = self.settings.config.data
        raw = raw_repo(self.settings)
        source = store.resolve(raw, ref or data.branch)
        files = store.read_many(raw, source.id)
        result = split_files(files, data.split.seed, data.split.test_ratio)
        params = {"seed": data.split.seed, "test_ratio": data.split.test_ratio, "dedupe": "sha256"}
        params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        provenance = Provenance(inputs=(source.ref,), spec_hash=params_hash)
        commits: dict[str, Commit] = {}
        for name, part in (("train", result.train), ("test", result.test)):
            repo = split_repo(self.settings, name)
            store.create_repo(repo, f"{name} split of {raw}")
            commits[name] = store.put(
                repo, data.branch, part, f"{name} split of {raw}@{source.id[:12]}", provenance
            )
        line = (
            f"split: {len(files)} raw files, {len(result.duplicates)} exact duplicates removed, "
            f"{len(result.conflicts)} conflicting duplicates dropped -> "
            f"train {len(result.train)} ({commits['train'].id[:12]}), "
            f"test {len(result.test)} ({commits['test'].id[:12]})"
        )
        return SplitResult(commits, (line,))

    def label_export(
        self, store: DataStore, validated: Commit, files: dict[str, bytes], split: str
    ) -> list[dict[str, Any]]:
        """Folder-derived labels (dated by the data commit: stable)."""
        created = validated.created or "1970-01-01T00:00:00+00:00"
        return folder_labels(
            files, self.settings.config.model.task, DataVersion.of(validated), created
        )
