"""Collection from folders, archives and file:// mirrors; the reproducible, leak-free split."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cdl_gitlab.config import Settings
from cdl_gitlab.data.assignment import plan_split
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.ingest import Limits, Staged, stage_source
from cdl_gitlab.data.steps.collect import collect
from cdl_gitlab.data.steps.split import split
from cdl_gitlab.data.stores.local_store import LocalStore


def read_source(path: Path) -> tuple[Staged, dict[str, bytes]]:
    """Stage ``path`` next to it; the outcome and the staged files' contents."""
    dest = path.parent / f"staged-{path.name}"
    staged = stage_source(path, dest, Limits())
    return staged, {rel: (dest / rel).read_bytes() for rel in staged.files}


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


FILES = {
    "bbc/README.TXT": b"readme",
    "bbc/business/001.txt": b"b1",
    "bbc/business/002.txt": b"b2",
    "bbc/sport/001.txt": b"s1",
}


def test_zip_with_top_folder_and_readme(tmp_path: Path) -> None:
    staged, files = read_source(_zip(tmp_path / "a.zip", FILES))
    assert sorted(files) == ["business/001.txt", "business/002.txt", "sport/001.txt"]
    assert [(d.path, d.reason) for d in staged.discarded] == [
        ("bbc/README.TXT", "outside_class_folder")
    ]


def test_tar_gz_without_top_folder(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {"business/1.txt": b"x", "sport/2.txt": b"y", "LICENSE": b"l"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    staged, files = read_source(path)
    assert files == {"business/1.txt": b"x", "sport/2.txt": b"y"}
    assert [d.path for d in staged.discarded] == ["LICENSE"]


def test_unsafe_and_hidden_entries_are_skipped(tmp_path: Path) -> None:
    staged, files = read_source(
        _zip(
            tmp_path / "a.zip",
            {
                "w/c/../../evil.txt": b"x",
                "w/c/.hidden": b"h",
                "w/c/ok.txt": b"ok",
                "__MACOSX/w/c/._ok.txt": b"",
            },
        )
    )
    assert files == {"c/ok.txt": b"ok"}
    assert {d.path: d.reason for d in staged.discarded} == {
        "w/c/../../evil.txt": "unsafe_path",
        "w/c/.hidden": "hidden",
    }


def test_bad_source(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"plain bytes")
    with pytest.raises(DataError, match="not a folder, zip or tar"):
        read_source(tmp_path / "x.bin")
    with pytest.raises(DataError, match="no such file"):
        read_source(tmp_path / "missing.zip")


def test_collect_from_mirror_env_overrides_source(
    make_project: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip(tmp_path / "mirror.zip", FILES)
    settings = make_project(source="http://unreachable.invalid/bbc.zip")
    monkeypatch.setenv("CDL_DATA_MIRROR", archive.as_uri())
    store = LocalStore(settings.state_dir / "data")
    first = collect(settings, store).commit
    assert first.file_count == 3
    assert collect(settings, store).commit.id == first.id  # unchanged source: same commit


def test_collect_without_source(project: Settings, store: LocalStore) -> None:
    with pytest.raises(DataError, match="no data source"):
        collect(project, store)


def test_split_is_reproducible_and_deduplicated() -> None:
    files = {f"{label}/{i:03d}.txt": f"{label} {i}".encode() for label in "ab" for i in range(40)}
    files["a/dup.txt"] = files["a/001.txt"]  # exact duplicate within a class
    files["b/clash.txt"] = files["a/002.txt"]  # same content under two classes
    result = plan_split(_digests(files), seed=3, test_ratio=0.25)
    assert result.duplicates == [("a/dup.txt", "a/001.txt")]
    assert sorted(result.conflicts) == ["a/002.txt", "b/clash.txt"]
    assert not set(result.train) & set(result.test)
    assert not set(result.train.values()) & set(result.test.values())
    assert len(result.train) + len(result.test) == 79  # 82 - 1 duplicate - 2 conflicts
    assert 0 < len(result.test) < 79
    again = plan_split(_digests(dict(reversed(list(files.items())))), seed=3, test_ratio=0.25)
    assert again.test == result.test
    assert plan_split(_digests(files), seed=4, test_ratio=0.25).test != result.test


def test_split_commits_with_provenance(project: Settings, store: LocalStore) -> None:
    store.create_repo("demo-raw")
    raw = store.put("demo-raw", "master", {f"c{i % 2}/{i}.txt": f"{i}".encode() for i in range(20)})
    result = split(project, store)
    commits = result.commits
    n_test = commits["test"].file_count
    assert result.lines == (
        "split: 20 raw files, 0 exact duplicates removed, 0 conflicting duplicates dropped -> "
        f"train {20 - n_test} ({commits['train'].id[:12]}), test {n_test} "
        f"({commits['test'].id[:12]})",
    )
    assert commits["train"].file_count + n_test == 20
    for commit in commits.values():
        assert [str(ref) for ref in commit.provenance.inputs] == [f"demo-raw@{raw.id}"]
    assert split(project, store).commits == commits  # reproducible: same ids
