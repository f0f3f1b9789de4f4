"""Fixtures for the registry, lineage and cluster tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from registry_helpers import write_checkpoint  # noqa: E402

from cdl_gitlab.config import Settings, load_settings  # noqa: E402

CDL_YAML = """\
version: 1
project: {name: News, slug: news}
profile: local
model: {name: news, framework: pytorch, task: text}
data: {repo_prefix: news}
cluster: {determined_master: "http://127.0.0.1:1"}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a cdl.yaml; no CDL_/DET_ environment leaks in."""
    for name in ("CDL_PROFILE", "CDL_CONFIG", "DET_MASTER", "DET_USER", "DET_PASS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    (root / "cdl.yaml").write_text(CDL_YAML, encoding="utf-8")
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project / "cdl.yaml")


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """``make_checkpoint(uuid)`` -> Checkpoint whose state_dict.pth holds the uuid."""
    from cdl_gitlab.registry import Checkpoint

    def make(uuid: str) -> Checkpoint:
        return Checkpoint(uuid, write_checkpoint(tmp_path / "checkpoints" / uuid, uuid))

    return make
