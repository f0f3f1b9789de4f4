"""The local versioned store: ids, branches, history, provenance, atomicity, locking."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cdl_gitlab.data.commits import CommitRef, Provenance
from cdl_gitlab.data.errors import DataError, NotFoundError
from cdl_gitlab.data.stores.local_store import LocalStore


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    store.create_repo("raw")
    return store


def test_identical_content_gives_identical_ids(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        store = LocalStore(tmp_path / name)
        store.create_repo("raw")
        commit = store.put("raw", "master", {"x/1.txt": b"one", "y/2.txt": b"two"}, f"msg {name}")
        ids.append(commit.id)
    assert ids[0] == ids[1]
    assert len(ids[0]) == 64


def test_put_from_folder_equals_put_from_mapping(local: LocalStore, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "x").mkdir(parents=True)
    (folder / "x" / "1.txt").write_bytes(b"one")
    from_folder = local.put("raw", "a", folder)
    other = LocalStore(tmp_path / "other")
    other.create_repo("raw")
    assert other.put("raw", "a", {"x/1.txt": b"one"}).id == from_folder.id


def test_reput_is_noop_and_changes_make_children(local: LocalStore) -> None:
    first = local.put("raw", "master", {"a.txt": b"1"})
    again = local.put("raw", "master", {"a.txt": b"1"}, "same content")
    assert again.id == first.id
    second = local.put("raw", "master", {"a.txt": b"2"})
    assert second.id != first.id and second.parent == first.id
    assert [c.id for c in local.history("raw", "master")] == [second.id, first.id]
    assert local.read("raw", first.id, "a.txt") == b"1"
    assert local.read("raw", "master", "a.txt") == b"2"
    assert local.resolve("raw", first.id[:10]).id == first.id


def test_put_replaces_the_tree(local: LocalStore) -> None:
    local.put("raw", "master", {"a.txt": b"1", "b.txt": b"2"})
    commit = local.put("raw", "master", {"b.txt": b"2"})
    assert local.list_files("raw", "master") == ["b.txt"]
    assert commit.file_count == 1 and commit.size_bytes == 1


def test_branches(local: LocalStore) -> None:
    base = local.put("raw", "master", {"a.txt": b"1"})
    local.create_branch("raw", "dev", "master")
    dev = local.put("raw", "dev", {"a.txt": b"1", "new.txt": b"n"})
    assert local.list_branches("raw") == {"dev": dev.id, "master": base.id}
    assert local.resolve("raw", "master").id == base.id
    assert local.resolve("raw", "dev").branch == "dev"
    assert dev.parent == base.id
    with pytest.raises(NotFoundError, match="no branch or commit 'nope'"):
        local.resolve("raw", "nope")
    with pytest.raises(DataError, match="invalid branch name"):
        local.put("raw", "bad/branch", {"a": b""})


def test_provenance_is_part_of_the_id(local: LocalStore) -> None:
    local.create_repo("out")
    source = local.put("raw", "master", {"a.txt": b"1"})
    provenance = Provenance(inputs=(CommitRef("raw", source.id),), spec_hash="abc")
    with_spec = local.put("out", "master", {"r.txt": b"r"}, provenance=provenance)
    assert local.provenance("out", "master") == provenance
    other = LocalStore(local.root.parent / "other")
    other.create_repo("out")
    plain = other.put("out", "master", {"r.txt": b"r"})
    assert plain.id != with_spec.id


def test_checkout(local: LocalStore, tmp_path: Path) -> None:
    commit = local.put("raw", "master", {"x/1.txt": b"one", "2.txt": b"two"})
    dest = tmp_path / "co"
    assert local.checkout("raw", "master", dest).id == commit.id
    assert (dest / "x" / "1.txt").read_bytes() == b"one"
    with pytest.raises(DataError, match="not empty"):
        local.checkout("raw", "master", dest)


def test_rejects_bad_paths_and_unknown_repos(local: LocalStore) -> None:
    with pytest.raises(DataError, match="invalid file path"):
        local.put("raw", "master", {"../escape.txt": b"x"})
    with pytest.raises(NotFoundError, match="does not exist"):
        local.put("missing", "master", {"a": b"x"})


def test_crash_mid_put_leaves_no_partial_commit(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = local.put("raw", "master", {"a.txt": b"1"})
    commits_before = set((local.root / "repos" / "raw" / "commits").iterdir())
    real = LocalStore._write_object
    calls = {"n": 0}

    def crashing(self: LocalStore, digest: str, data: bytes) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(self, digest, data)

    monkeypatch.setattr(LocalStore, "_write_object", crashing)
    with pytest.raises(OSError, match="simulated"):
        local.put("raw", "master", {f"f{i}.txt": f"{i}".encode() for i in range(5)})
    assert local.resolve("raw", "master").id == before.id
    assert set((local.root / "repos" / "raw" / "commits").iterdir()) == commits_before
    assert not list(local.root.rglob("*.tmp"))


def test_crash_before_head_moves_keeps_head(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = local.put("raw", "master", {"a.txt": b"1"})
    import cdl_gitlab.data.stores.local_store as module

    def failing(path: Path, text: str) -> Path:
        raise OSError("killed before the head moved (simulated)")

    monkeypatch.setattr(module, "atomic_write_text", failing)
    with pytest.raises(OSError, match="simulated"):
        local.put("raw", "master", {"a.txt": b"2"})
    assert local.resolve("raw", "master").id == before.id
    assert local.read("raw", "master", "a.txt") == b"1"


def test_concurrent_puts_serialize(local: LocalStore) -> None:
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for step in range(5):
                local.put("raw", "master", {"f.txt": f"{index}-{step}".encode()})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    history = local.history("raw", "master")
    assert len(history) == 20
    assert len({c.id for c in history}) == 20
