"""``cdl deploy select``: one decision of the version to deploy, from the registry's records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdl_gitlab.deploy.selection import SelectionError, select_version
from cdl_gitlab.registry import Checkpoint, LocalRegistry

NAME = "news-demo"


def _settings(threshold: float = 0.8) -> Any:
    return SimpleNamespace(
        config=SimpleNamespace(
            model=SimpleNamespace(name=NAME),
            training=SimpleNamespace(accuracy_threshold=threshold),
        )
    )


def _register(registry: LocalRegistry, tmp_path: Path, uuid: str, metadata: dict) -> int:
    folder = tmp_path / uuid
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    return registry.register_version(NAME, Checkpoint(uuid, folder), metadata).version


def _evaluated(accuracy: float) -> dict:
    return {"metrics": {"test": {"accuracy": accuracy}}}


def _compressed(source: int, passed: bool) -> dict:
    return {
        "compression": {"passed": passed},
        "lineage": {"checkpoint": {"compressed_from": {"version": source}}},
    }


def test_the_compressed_version_when_its_gate_passed(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    native = _register(registry, tmp_path, "a", _evaluated(0.9))
    compressed = _register(registry, tmp_path, "a-int8", _compressed(native, True))
    chosen = select_version(_settings(), registry)
    assert (chosen.version, chosen.variant, chosen.native_version) == (compressed, "compressed", 1)
    assert chosen.dotenv().splitlines() == [
        f"CDL_DEPLOY_MODEL={NAME}",
        f"CDL_DEPLOY_VERSION={compressed}",
        "CDL_DEPLOY_VARIANT=compressed",
        f"CDL_DEPLOY_NATIVE_VERSION={native}",
    ]


def test_the_native_version_without_a_compressed_one_of_it(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    old = _register(registry, tmp_path, "a", _evaluated(0.9))
    _register(registry, tmp_path, "a-int8", _compressed(old, True))  # of an older version
    newest = _register(registry, tmp_path, "b", _evaluated(0.85))
    chosen = select_version(_settings(), registry)
    assert (chosen.version, chosen.variant) == (newest, "native")
    # the same records give the same decision every time
    assert select_version(_settings(), registry) == chosen


def test_versions_below_the_gate_or_unevaluated_are_never_chosen(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    passed = _register(registry, tmp_path, "a", _evaluated(0.9))
    _register(registry, tmp_path, "b", _evaluated(0.5))
    _register(registry, tmp_path, "c", {})
    assert select_version(_settings(), registry).version == passed
    with pytest.raises(SelectionError, match="passed the accuracy gate"):
        select_version(_settings(threshold=0.95), registry)
