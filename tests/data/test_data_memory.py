"""Memory of the data pipeline does not grow with the number of files (issue 12's figure).

No timing: the peak of Python allocations (tracemalloc) of collect, split and checkout +
validate is measured for N and 4N generated files. Retaining anything per file (a list of
paths, a manifest dict, digests...) costs hundreds of bytes a file, so 3N more files would
add far more than the bound; streaming keeps the difference to one folder's listing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from data_helpers import create_project

from cdl_gitlab.config import Settings
from cdl_gitlab.data.commits import Provenance
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.steps.validate import Rules, validate_tree
from cdl_gitlab.data.stores.local_store import LocalStore, commit_id

CLASSES = ("alpha", "beta", "gamma", "delta")
N = 300
BOUND = 150 * 1024
"""Allowed growth of each phase's peak from N to 4N files: ~0.2 KB for each added file,
where the earlier code (lists and dicts of every file) added ~1-2 KB per file."""


def _write_source(root: Path, count: int) -> None:
    for index in range(count):
        path = root / CLASSES[index % len(CLASSES)] / f"item-{index:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"item {index} of the corpus, " * 3, encoding="utf-8")


def _peak(step: Callable[[], object]) -> int:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    step()
    return tracemalloc.get_traced_memory()[1] - base


def _peaks(root: Path, count: int) -> dict[str, int]:
    source = root / "source"
    _write_source(source, count)
    settings: Settings = create_project(root / "project", source=str(source), render=False)
    store = LocalStore(settings.state_dir / "data")
    rules = Rules.from_settings(settings)

    def validate() -> None:
        for name in ("train", "test"):
            store.checkout(f"demo-{name}", "master", root / "in" / name)
            validate_tree(root / "in" / name, root / "out" / name, rules)

    return {
        "collect": _peak(lambda: pipeline.collect(settings, store, lambda _line: None)),
        "split": _peak(lambda: pipeline.split(settings, store, lambda _line: None)),
        "validate": _peak(validate),
    }


@pytest.fixture
def traced() -> Iterator[None]:
    logging.disable(logging.INFO)
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)


def test_peak_memory_does_not_grow_with_the_file_count(tmp_path: Path, traced: None) -> None:
    _peaks(tmp_path / "warm", N)  # imports, caches and one-time growth of tables
    small = _peaks(tmp_path / "small", N)
    large = _peaks(tmp_path / "large", 4 * N)
    growth = {phase: large[phase] - small[phase] for phase in small}
    print(f"peaks at {N}: {small}; at {4 * N}: {large}")
    assert all(value < BOUND for value in growth.values()), (small, large)


def test_streamed_commit_ids_equal_those_of_a_manifest_in_memory(tmp_path: Path) -> None:
    """Commit ids are unchanged by streaming: names whose sort differs from a folder walk's
    (``a-b`` sorts before ``a/``), non-ASCII names, nested folders."""
    files = {
        "a/x.txt": b"1",
        "a-b/y.txt": b"2",
        "a/b/c.txt": b"3",
        "a/bd.txt": b"4",
        "café/é.txt": b"5",
        "z.txt": b"",
    }
    folder = tmp_path / "tree"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    store = LocalStore(tmp_path / "store")
    store.create_repo("raw")
    provenance = Provenance(spec_hash="spec")
    first = store.put("raw", "master", folder, "m", provenance)
    manifest = {rel: [hashlib.sha256(data).hexdigest(), len(data)] for rel, data in files.items()}
    assert first.id == commit_id(manifest, None, provenance)
    assert store.list_files("raw", "master") == sorted(files)
    assert store.put("raw", "master", dict(files), "again", provenance).id == first.id  # no-op
    second = store.put("raw", "master", {"one.txt": b"1"})
    assert second.id == commit_id(
        {"one.txt": [hashlib.sha256(b"1").hexdigest(), 1]}, first.id, Provenance()
    )


def test_reads_commits_of_the_earlier_layout(tmp_path: Path) -> None:
    """A commit file with its manifest inline (``"files"``) is read, checked out, and putting
    the same tree on it again is a no-op."""
    store = LocalStore(tmp_path / "store")
    store.create_repo("raw")
    new = store.put("raw", "master", {"a/1.txt": b"one", "b/2.txt": b"two"})
    folder = store.root / "repos" / "raw" / "commits"
    record = json.loads((folder / f"{new.id}.json").read_text("utf-8"))
    manifest = {path: [digest, size] for path, digest, size in store._rows(record)}
    (folder / record.pop("manifest")).unlink()
    for key in ("file_count", "size_bytes", "files_sha256"):
        record.pop(key)
    record["files"] = manifest
    (folder / f"{new.id}.json").write_text(json.dumps(record), "utf-8")
    old = LocalStore(store.root)
    assert old.resolve("raw", "master").file_count == 2
    assert old.read("raw", "master", "b/2.txt") == b"two"
    assert old.list_files("raw", new.id) == ["a/1.txt", "b/2.txt"]
    old.checkout("raw", "master", tmp_path / "co")
    assert (tmp_path / "co" / "a" / "1.txt").read_bytes() == b"one"
    assert old.put("raw", "master", {"b/2.txt": b"two", "a/1.txt": b"one"}).id == new.id
