"""Safe ingestion: links, special files, unsafe members, oversize members and zip bombs are
discarded with a reason (never followed, opened or extracted); good items all arrive."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import stat
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from data_helpers import CLASSES, article, create_project

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.ingest import Limits, stage_source
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.stores.local_store import LocalStore

LIMITS = Limits(max_member_bytes=20_000, max_total_bytes=10_000_000, max_compression_ratio=50)


def _good(root: Path, per_class: int = 8) -> set[str]:
    rng = random.Random(5)
    good = set()
    for label in CLASSES:
        for index in range(per_class):
            path = root / label / f"{index:03d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(article(rng, label), encoding="utf-8")
            good.add(f"{label}/{index:03d}.txt")
    return good


def _hostile_folder(root: Path) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """Good items, entries discarded at collection, and items validation discards."""
    good = _good(root)
    (root / "business" / "passwd.txt").symlink_to("/etc/passwd")
    (root / "business" / "copy.txt").symlink_to(root / "sport" / "000.txt")
    (root / "tech" / "linked").symlink_to(root / "sport", target_is_directory=True)
    os.mkfifo(root / "sport" / "pipe.txt")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "tech" / "sock.txt"))
    listener.close()
    (root / "tech" / "huge.txt").write_bytes(b"word " * 5_000)  # 25,000 bytes > 20,000
    (root / "business" / ".DS_Store").write_bytes(b"junk")
    (root / "LICENSE").write_text("licence text", encoding="utf-8")
    at_collect = {
        "business/passwd.txt": "symlink",
        "business/copy.txt": "symlink",
        "tech/linked": "symlink",
        "sport/pipe.txt": "special_file",
        "tech/sock.txt": "special_file",
        "tech/huge.txt": "oversized_member",
        "business/.DS_Store": "hidden",
        "LICENSE": "outside_class_folder",
    }
    bad_content = {
        "business/empty.txt": (b"", "empty"),
        "sport/blank.txt": (b"  \n\t \r\n", "empty"),
        "tech/binary.txt": (bytes(range(256)) * 8, "binary"),
    }
    for rel, (data, _) in bad_content.items():
        (root / rel).write_bytes(data)
    return good, at_collect, {rel: reason for rel, (_, reason) in bad_content.items()}


def test_folder_outcomes(tmp_path: Path) -> None:
    good, at_collect, bad_content = _hostile_folder(tmp_path / "src")
    staged = stage_source(tmp_path / "src", tmp_path / "out", LIMITS)
    assert {d.path: d.reason for d in staged.discarded} == at_collect
    assert set(staged.files) == good | set(bad_content)
    passwd = Path("/etc/passwd").read_bytes()
    for rel in staged.files:
        path = tmp_path / "out" / rel
        assert not path.is_symlink() and path.read_bytes() != passwd


def _project(tmp_path: Path, source: Path) -> Settings:
    settings = create_project(tmp_path / "project", source=str(source), min_items=3)
    config = settings.root / "cdl.yaml"
    limits = "  limits: {max_member_bytes: 20000, max_compression_ratio: 50}\n"
    config.write_text(config.read_text(encoding="utf-8") + limits, encoding="utf-8")
    return load_settings(config, "local")


def _heads(store: LocalStore) -> dict[str, str]:
    return {repo: store.resolve(repo, "master").id for repo in store.list_repos()}


def test_pipeline_on_a_hostile_folder(tmp_path: Path) -> None:
    good, _, bad_content = _hostile_folder(tmp_path / "src")
    settings = _project(tmp_path, tmp_path / "src")
    store = LocalStore(settings.state_dir / "data")
    lines: list[str] = []
    pipeline.run_all(settings, store, lines.append)
    assert "discarded 8 (hidden 1, outside_class_folder 1, oversized_member 1, " in lines[0]
    assert "special_file 2, symlink 3;" in lines[0]
    raw = set(store.list_files("demo-raw", "master"))
    assert raw == good | set(bad_content)
    kept: set[str] = set()
    reasons: dict[str, str] = {}
    for split in ("train", "test"):
        files = store.list_files(f"demo-{split}-validate", "master")
        kept |= {path for path in files if path != "summary.json"}
        summary = json.loads(store.read(f"demo-{split}-validate", "master", "summary.json"))
        reasons |= {item["path"]: item["reason"] for item in summary["discarded_items"]}
    assert kept == good  # nothing good lost
    assert reasons == bad_content
    heads = _heads(store)
    pipeline.run_all(settings, store, lines.append)
    assert _heads(store) == heads  # a rerun is a no-op


def _zip_member(archive: zipfile.ZipFile, name: str, data: bytes, mode: int | None = None) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.external_attr = mode << 16
    archive.writestr(info, data)


def test_zip_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "src.zip"
    rng = random.Random(9)
    with zipfile.ZipFile(path, "w") as archive:
        for label in CLASSES:
            _zip_member(archive, f"top/{label}/1.txt", article(rng, label).encode())
        _zip_member(archive, "/etc/absolute.txt", b"x")
        _zip_member(archive, "top/business/../../escape.txt", b"x")
        _zip_member(archive, "top/sport/link.txt", b"/etc/passwd", stat.S_IFLNK | 0o777)
        _zip_member(archive, "top/sport/fifo.txt", b"", stat.S_IFIFO | 0o644)
        _zip_member(archive, "top/tech/bomb.txt", b"\0" * 19_000)  # ratio ~ 1000
        archive.writestr("top/tech/big.txt", bytes(rng.randrange(256) for _ in range(30_000)))
    staged = stage_source(path, tmp_path / "out", LIMITS)
    assert staged.files == ["business/1.txt", "sport/1.txt", "tech/1.txt"]
    outcomes = {d.path: d.reason for d in staged.discarded}
    assert outcomes == {
        "/etc/absolute.txt": "unsafe_path",
        "top/business/../../escape.txt": "unsafe_path",
        "top/sport/link.txt": "symlink",
        "top/sport/fifo.txt": "special_file",
        "top/tech/bomb.txt": "compression_ratio",
        "top/tech/big.txt": "oversized_member",
    }
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_tar_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "src.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, kind, data in [
            ("c/ok.txt", tarfile.REGTYPE, b"fine"),
            ("b/link.txt", tarfile.SYMTYPE, b""),
            ("b/hard.txt", tarfile.LNKTYPE, b""),
            ("b/fifo.txt", tarfile.FIFOTYPE, b""),
            ("b/dev.txt", tarfile.CHRTYPE, b""),
            ("../up.txt", tarfile.REGTYPE, b"x"),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "/etc/passwd"
            archive.addfile(info, io.BytesIO(data) if data else None)
    staged = stage_source(path, tmp_path / "out", LIMITS)
    assert staged.files == ["c/ok.txt"]
    assert {d.path: d.reason for d in staged.discarded} == {
        "b/link.txt": "symlink",
        "b/hard.txt": "special_file",
        "b/fifo.txt": "special_file",
        "b/dev.txt": "special_file",
        "../up.txt": "unsafe_path",
    }


def test_total_size_cap_commits_nothing(tmp_path: Path) -> None:
    _good(tmp_path / "src", per_class=20)
    settings = _project(tmp_path, tmp_path / "src")
    config = settings.root / "cdl.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "{max_member", "{max_total_bytes: 5000, max_member"
        ),
        encoding="utf-8",
    )
    settings = load_settings(config, "local")
    store = LocalStore(settings.state_dir / "data")
    with pytest.raises(DataError, match=r"data.limits.max_total_bytes \(5000 bytes\)"):
        pipeline.collect(settings, store)
    assert store.list_repos() == []


def test_collect_and_split_hold_one_file_at_a_time(tmp_path: Path) -> None:
    """Python's peak allocation stays far below the data set's size (12 MB here)."""
    rng = random.Random(4)
    for index in range(300):
        path = tmp_path / "src" / CLASSES[index % 3] / f"{index:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(40_000))
    settings = create_project(tmp_path / "project", source=str(tmp_path / "src"), render=False)
    store = LocalStore(settings.state_dir / "data")
    tracemalloc.start()
    try:
        pipeline.collect(settings, store)
        pipeline.split(settings, store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.resolve("demo-raw", "master").size_bytes == 12_000_000
    assert peak < 3_000_000, peak


def test_a_corrupt_zip_member_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "src.zip"
    with zipfile.ZipFile(path, "w") as archive:  # stored: the text is in the file as is
        archive.writestr("a/good.txt", b"a good article " * 20)
        archive.writestr("b/bad.txt", b"a damaged article " * 20)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"a damaged article", b"a DAMAGED article", 1))
    staged = stage_source(path, tmp_path / "out", LIMITS)
    assert staged.files == ["a/good.txt"]
    assert [(d.path, d.reason) for d in staged.discarded] == [("b/bad.txt", "unreadable")]
    assert "CRC" in staged.discarded[0].detail
    assert not (tmp_path / "out" / "b" / "bad.txt").exists()
