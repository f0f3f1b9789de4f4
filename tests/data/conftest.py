"""Fixtures of the data-pipeline tests: a small CDL project and its local store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from data_helpers import create_project

from cdl_gitlab.config import Settings
from cdl_gitlab.data.stores.local_store import LocalStore


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Settings]:
    """``make_project(task="text", source="") -> Settings`` of a project in tmp_path."""

    def _make(**options: Any) -> Settings:
        return create_project(tmp_path / "project", **options)

    return _make


@pytest.fixture
def project(make_project: Callable[..., Settings]) -> Settings:
    return make_project()


@pytest.fixture
def store(project: Settings) -> LocalStore:
    return LocalStore(project.state_dir / "data")
