"""The local model registry: operations, metadata merge, concurrency and crash atomicity."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from registry_helpers import write_checkpoint

from cdl_gitlab.registry import (
    Checkpoint,
    LocalRegistry,
    ModelRegistry,
    RegistryError,
    merge_metadata,
    open_registry,
    production_version,
)

FORK = multiprocessing.get_context("fork")


def test_open_registry_local_profile(settings) -> None:
    registry = open_registry(settings)
    assert isinstance(registry, LocalRegistry)
    assert isinstance(registry, ModelRegistry)
    assert registry.root == settings.state_dir / "registry"


def test_register_list_get_download(tmp_path: Path, make_checkpoint) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    registry.create_model("news", description="BBC news", labels=["text"])
    registry.create_model("news")  # idempotent
    assert registry.list_models() == ["news"]
    assert registry.list_versions("news") == []
    first = registry.register_version("news", make_checkpoint("aaa"), {"stage": "dev"})
    second = registry.register_version("news", make_checkpoint("bbb"))
    assert (first.version, second.version) == (1, 2)
    assert first.path == tmp_path / "reg" / "models" / "news" / "1"
    assert (first.path / "state_dict.pth").read_text() == "aaa"
    assert (first.path / "sub" / "metadata.json").is_file()

    listed = registry.list_versions("news")
    assert [(v.version, v.checkpoint_uuid) for v in listed] == [(1, "aaa"), (2, "bbb")]
    assert listed[0].metadata == {"stage": "dev"}
    assert registry.get_version("news").version == 2
    assert registry.get_version("news", 1).checkpoint_uuid == "aaa"

    dest = registry.download("news", 1, tmp_path / "out")
    assert (dest / "state_dict.pth").read_text() == "aaa"
    with pytest.raises(RegistryError, match="not empty"):
        registry.download("news", 1, tmp_path / "out")
    os.chdir(tmp_path)
    assert registry.download("news") == tmp_path / "checkpoints" / "news-v2"


def test_missing_model_and_version_are_named(tmp_path: Path, make_checkpoint) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="'nope' is not in the registry"):
        registry.get_version("nope")
    registry.create_model("news")
    with pytest.raises(RegistryError, match="'news' has no registered versions"):
        registry.get_version("news")
    registry.register_version("news", make_checkpoint("aaa"))
    with pytest.raises(RegistryError, match="'news' has no version 7"):
        registry.get_version("news", 7)
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.create_model("../escape")
    with pytest.raises(RegistryError, match="needs the checkpoint folder"):
        registry.register_version("news", Checkpoint("ccc"))


def test_add_metadata_merges_and_refuses_conflicts(tmp_path: Path, make_checkpoint) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    registry.register_version("news", make_checkpoint("aaa"), {"lineage": {"code": {"c": 1}}})
    updated = registry.add_metadata("news", 1, {"lineage": {"metrics": {"test": {"acc": 0.9}}}})
    assert updated.metadata == {"lineage": {"code": {"c": 1}, "metrics": {"test": {"acc": 0.9}}}}
    # the same value again is fine
    registry.add_metadata("news", 1, {"lineage": {"metrics": {"test": {"acc": 0.9}}}})
    with pytest.raises(RegistryError, match=r"news v1: metadata key lineage\.metrics\.test\.acc"):
        registry.add_metadata("news", 1, {"lineage": {"metrics": {"test": {"acc": 0.5}}}})
    assert registry.get_version("news", 1).metadata["lineage"]["metrics"]["test"]["acc"] == 0.9
    registry.add_metadata(
        "news", 1, {"lineage": {"metrics": {"test": {"acc": 0.5}}}}, overwrite=True
    )
    assert registry.get_version("news", 1).metadata["lineage"]["metrics"]["test"]["acc"] == 0.5
    with pytest.raises(RegistryError, match="JSON"):
        registry.add_metadata("news", 1, {"bad": object()})


def test_merge_metadata_rules() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge_metadata(base, {"a": {"e": 2}}) == {"a": {"b": 1, "c": [1, 2], "e": 2}, "d": "x"}
    with pytest.raises(RegistryError, match=r"metadata key a\.c"):
        merge_metadata(base, {"a": {"c": [3]}})
    with pytest.raises(RegistryError, match="metadata key d"):
        merge_metadata(base, {"d": {"nested": 1}})
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}  # never mutated


def test_production_version(tmp_path: Path, make_checkpoint) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    for uuid in ("a1", "b2", "c3"):
        registry.register_version("news", make_checkpoint(uuid))
    assert production_version(registry, "news") is None
    registry.add_metadata("news", 1, {"deployments": {"production": {"image": "x@sha256:1"}}})
    registry.add_metadata("news", 2, {"deployments": {"staging": {"image": "x@sha256:2"}}})
    assert production_version(registry, "news").version == 1


def _register_many(root: Path, source_root: Path, worker: int, count: int) -> None:
    registry = LocalRegistry(root)
    for index in range(count):
        uuid = f"w{worker}-{index}"
        registry.register_version("news", Checkpoint(uuid, source_root / uuid), {"by": worker})


def test_concurrent_registrations_lose_nothing(tmp_path: Path) -> None:
    workers, per_worker = 4, 4
    sources = tmp_path / "sources"
    for worker in range(workers):
        for index in range(per_worker):
            write_checkpoint(sources / f"w{worker}-{index}", f"w{worker}-{index}")
    root = tmp_path / "reg"
    LocalRegistry(root).create_model("news")
    processes = [
        FORK.Process(target=_register_many, args=(root, sources, worker, per_worker))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    versions = LocalRegistry(root).list_versions("news")
    assert [v.version for v in versions] == list(range(1, workers * per_worker + 1))
    uuids = sorted(v.checkpoint_uuid for v in versions)
    assert uuids == sorted(f"w{w}-{i}" for w in range(workers) for i in range(per_worker))
    for version in versions:  # every folder holds its own checkpoint
        assert (version.path / "state_dict.pth").read_text() == version.checkpoint_uuid
    assert not list((root / "models" / "news" / ".staging").iterdir())


def _crash_at(root: Path, checkpoint: Checkpoint, method: str) -> None:
    def die(*args, **kwargs):
        os._exit(17)  # no cleanup handlers run, as with SIGKILL

    setattr(LocalRegistry, method, staticmethod(die))
    LocalRegistry(root).register_version("news", checkpoint)


@pytest.mark.parametrize("method", ["_publish", "_insert_row"])
def test_crash_leaves_no_half_written_version(tmp_path: Path, make_checkpoint, method) -> None:
    """Killed after the copy (before the rename) or after the rename (before the commit)."""
    root = tmp_path / "reg"
    registry = LocalRegistry(root)
    registry.register_version("news", make_checkpoint("first"))
    process = FORK.Process(target=_crash_at, args=(root, make_checkpoint("doomed"), method))
    process.start()
    process.join(60)
    assert process.exitcode == 17

    leftover = root / "models" / "news" / ("2" if method == "_insert_row" else ".staging")
    assert any(leftover.iterdir())  # the crash left files behind ...
    # ... that no reader sees
    assert [v.checkpoint_uuid for v in registry.list_versions("news")] == ["first"]
    with pytest.raises(RegistryError, match="no version 2"):
        registry.get_version("news", 2)
    # the next registration takes the number the crashed one never committed, cleanly
    after = registry.register_version("news", make_checkpoint("next"))
    assert after.version == 2
    assert (after.path / "state_dict.pth").read_text() == "next"
    assert sorted(p.name for p in (root / "models" / "news").iterdir()) == [".staging", "1", "2"]
    assert not list((root / "models" / "news" / ".staging").iterdir())


def test_failed_commit_removes_the_published_folder(
    tmp_path: Path, make_checkpoint, monkeypatch
) -> None:
    registry = LocalRegistry(tmp_path / "reg")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(LocalRegistry, "_insert_row", staticmethod(fail))
    with pytest.raises(RuntimeError):
        registry.register_version("news", make_checkpoint("aaa"))
    assert not (tmp_path / "reg" / "models" / "news" / "1").exists()
    assert registry.list_models() == []
