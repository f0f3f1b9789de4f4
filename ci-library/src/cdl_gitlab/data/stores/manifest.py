"""A local commit's file list (path -> SHA-256 and size), written and read one row at a time.

A commit of 100,000 files has a manifest of 100,000 rows; holding it as a dict costs ~400 bytes
a file. :class:`ManifestWriter` streams the rows (in path order) into an SQLite file, a
temporary one until :meth:`~ManifestWriter.finish` moves it into place, and computes on the way
the two digests the store needs: the commit id and the digest of the file list alone (which
tells a no-op ``put``). :func:`iter_manifest` and :func:`lookup` read it back by path order and
by path (the primary key), without loading it.

The digests are those of the canonical JSON (sorted keys, no spaces) of
``{"files": {path: [sha256, size], ...}, "parent": ..., "provenance": ...}`` and of its
``files`` member, hashed piece by piece: the same ids as a manifest held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdl_gitlab.data.errors import DataError

Row = tuple[str, str, int]  # (path, sha256, size)

_SCHEMA = "CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL)"
_BATCH = 256


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def files_digest(files: dict[str, list[Any]]) -> str:
    """The digest of a file list held in memory (a commit record of the earlier layout)."""
    return hashlib.sha256(_canonical(files).encode("utf-8")).hexdigest()


class ManifestWriter:
    """Rows in, in strictly increasing path order; then :meth:`finish` or :meth:`discard`."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        os.close(fd)
        self.path = Path(name)
        self.count = 0
        self.size_bytes = 0
        self._last: str | None = None
        self._files = hashlib.sha256(b"{")
        self._payload = hashlib.sha256(b'{"files":{')
        self._batch: list[Row] = []
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(_SCHEMA)

    def add(self, path: str, sha256: str, size: int) -> None:
        if self._last is not None and path <= self._last:
            raise DataError(f"manifest rows out of order: {path!r} after {self._last!r}")
        separator = "," if self.count else ""
        piece = f"{separator}{json.dumps(path)}:{_canonical([sha256, size])}".encode()
        self._files.update(piece)
        self._payload.update(piece)
        self._batch.append((path, sha256, size))
        if len(self._batch) >= _BATCH:
            self._flush()
        self._last = path
        self.count += 1
        self.size_bytes += size

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO files VALUES (?, ?, ?)", self._batch)
        self._batch.clear()

    def close(self) -> None:
        """Write the last rows and make the file durable (still under its temporary name)."""
        self._flush()
        self._db.commit()
        self._db.close()
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())

    def files_digest(self) -> str:
        """The digest of the file list (see :func:`files_digest`)."""
        digest = self._files.copy()
        digest.update(b"}")
        return digest.hexdigest()

    def commit_id(self, parent: str | None, provenance: dict[str, Any]) -> str:
        """The SHA-256 of the canonical JSON of (files, parent, provenance)."""
        digest = self._payload.copy()
        tail = f'}},"parent":{_canonical(parent)},"provenance":{_canonical(provenance)}}}'
        digest.update(tail.encode())
        return digest.hexdigest()

    def finish(self, target: Path) -> None:
        """Move the (closed) file to ``target``: it exists whole or not at all."""
        os.replace(self.path, target)

    def discard(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def iter_manifest(path: Path) -> Iterator[Row]:
    """The rows of a manifest file in path order, fetched in batches."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        cursor = db.execute("SELECT path, sha256, size FROM files ORDER BY path")
        while rows := cursor.fetchmany(_BATCH):
            yield from rows
    finally:
        db.close()


def lookup(path: Path, file_path: str) -> tuple[str, int] | None:
    """``(sha256, size)`` of one file of a manifest, or None."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        row = db.execute("SELECT sha256, size FROM files WHERE path = ?", (file_path,)).fetchone()
    finally:
        db.close()
    return (row[0], row[1]) if row else None
