"""The ``archive`` format's split of a checked-out raw tree into ``train/`` and ``test/``.

The rule is :func:`cdl_gitlab.data.assignment.place` (deduplicate by content, assign each
content by its hash and the seed), applied without holding the data set in memory: each file
is hashed as the folder is walked and its ``(digest, path)`` row goes into an SQLite table in
the work folder; the rows are then read back grouped by digest (SQLite sorts on disk) and the
kept file of each group is hard-linked into its set. Only counters stay in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cdl_gitlab.data.assignment import place
from cdl_gitlab.data.stores.base import iter_folder

_BATCH = 256


@dataclass
class SplitCounts:
    """How many raw files, exact duplicates and conflicting copies; items per set."""

    raw: int = 0
    duplicates: int = 0
    conflicts: int = 0
    train: int = 0
    test: int = 0


def link(src: Path, dest: Path) -> None:
    """Hard-link (or copy, across file systems) the file ``src`` to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _index(raw: Path, db: sqlite3.Connection) -> int:
    db.execute("CREATE TABLE items (digest TEXT NOT NULL, path TEXT NOT NULL)")
    batch: list[tuple[str, str]] = []
    count = 0
    for rel, path in iter_folder(raw):
        with open(path, "rb") as handle:
            batch.append((hashlib.file_digest(handle, "sha256").hexdigest(), rel))
        count += 1
        if len(batch) >= _BATCH:
            db.executemany("INSERT INTO items VALUES (?, ?)", batch)
            batch.clear()
    db.executemany("INSERT INTO items VALUES (?, ?)", batch)
    return count


def split_tree(raw: Path, work: Path, seed: int, test_ratio: float) -> SplitCounts:
    """Split the ``<class>/<file>`` files under ``raw`` into ``work/train`` and ``work/test``
    (uses ``work/split.sqlite`` as scratch)."""
    counts = SplitCounts()
    db = sqlite3.connect(work / "split.sqlite")
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        counts.raw = _index(raw, db)
        rows = db.execute("SELECT digest, path FROM items ORDER BY digest, path")
        for digest, group in itertools.groupby(rows, key=lambda row: row[0]):
            paths = [path for _, path in group]
            target = place(digest, paths, seed, test_ratio)
            if target is None:
                counts.conflicts += len(paths)
                continue
            counts.duplicates += len(paths) - 1
            link(raw / paths[0], work / target / paths[0])
            setattr(counts, target, getattr(counts, target) + 1)
    finally:
        db.close()
    return counts
