"""Reproducible train/test split of ``<prefix>-raw`` into ``<prefix>-train`` / ``<prefix>-test``.

Exact duplicates (same content hash) are removed first so that no item can be in both sets:
the first path (sorted) of each content is kept; a content that appears under two different
classes is ambiguous and dropped altogether. The split is stratified by class folder: within
each class (sorted by name) the sorted paths are shuffled with ``random.Random(seed)`` and
``n * test_ratio`` (rounded half up) go to test. Both commits carry provenance: the raw
commit and the hash of the split parameters. With ``data.format: idx`` the source's own
train/test split is kept instead (:func:`cdl_gitlab.data.fashion.split`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cdl_gitlab.data.model import Commit, Provenance
from cdl_gitlab.data.names import raw_repo, split_repo

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.store import DataStore


@dataclass
class SplitResult:
    train: dict[str, bytes] = field(default_factory=dict)
    test: dict[str, bytes] = field(default_factory=dict)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    conflicts: list[str] = field(default_factory=list)


def deduplicate(files: dict[str, bytes], result: SplitResult) -> dict[str, bytes]:
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


def split_files(files: dict[str, bytes], seed: int, test_ratio: float) -> SplitResult:
    """Deduplicate, then split stratified by class; deterministic for the same inputs."""
    result = SplitResult()
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


def split(settings: Settings, store: DataStore, ref: str | None = None) -> dict[str, Commit]:
    """Split the raw repo at ``ref`` (default: ``data.branch``) and commit both sets."""
    data = settings.config.data
    if data.format == "idx":  # the source's own train/test split, converted to PNG items
        from cdl_gitlab.data import fashion

        return fashion.split(settings, store, ref)
    raw = raw_repo(settings)
    source = store.resolve(raw, ref or data.branch)
    files = store.read_many(raw, source.id)
    result = split_files(files, data.split.seed, data.split.test_ratio)
    params = {"seed": data.split.seed, "test_ratio": data.split.test_ratio, "dedupe": "sha256"}
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    provenance = Provenance(inputs=(source.ref,), spec_hash=params_hash)
    commits: dict[str, Commit] = {}
    for name, part in (("train", result.train), ("test", result.test)):
        repo = split_repo(settings, name)
        store.create_repo(repo, f"{name} split of {raw}")
        commits[name] = store.put(
            repo, data.branch, part, f"{name} split of {raw}@{source.id[:12]}", provenance
        )
    print(
        f"split: {len(files)} raw files, {len(result.duplicates)} exact duplicates removed, "
        f"{len(result.conflicts)} conflicting duplicates dropped -> "
        f"train {len(result.train)} ({commits['train'].id[:12]}), "
        f"test {len(result.test)} ({commits['test'].id[:12]})"
    )
    return commits
