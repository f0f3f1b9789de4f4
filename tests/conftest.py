"""Fixtures shared by every test area: rendering the template into a project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.determined_master import DET_PASSWORD, DET_USER, FakeDeterminedMaster
from rendering import GIT_IDENTITY, RenderFn, render, snapshot_template


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git-free snapshot of the template, shared by the session."""
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def render_project(template_dir: Path, tmp_path: Path) -> RenderFn:
    """``render_project(starter="news", ...) -> Path`` of a freshly rendered project."""
    counter = iter(range(1_000_000))

    def _render(**answers: Any) -> Path:
        return render(template_dir, tmp_path / f"project-{next(counter)}", answers)

    return _render


@pytest.fixture
def det_master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDeterminedMaster]:
    """A fake Determined master the real SDK logs in to with DET_USER/DET_PASS (no DET_MASTER
    set: tests point settings at ``det_master.url``)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "det-config"))  # SDK token store
    monkeypatch.setenv("DET_USER", DET_USER)
    monkeypatch.setenv("DET_PASS", DET_PASSWORD)
    for name in ("DET_MASTER", "DET_USER_TOKEN", "DET_MASTER_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with FakeDeterminedMaster(username=DET_USER, password=DET_PASSWORD) as fake:
        yield fake
