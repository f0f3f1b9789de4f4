"""Fixtures of the model tests: generated projects with labelled data in the local store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from model_fixtures import make_project

from cdl_gitlab.config import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDL_PROFILE", "CDL_CONFIG", "DET_MASTER", "CDL_MODEL_VERSION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project_factory(tmp_path: Path) -> Callable[..., Settings]:
    """``project_factory(framework, task, **options)`` -> Settings of a fresh project."""
    counter = iter(range(100))

    def factory(framework: str, task: str, **options) -> Settings:
        return make_project(
            tmp_path / f"{framework}-{task}-{next(counter)}", framework, task, **options
        )

    return factory
