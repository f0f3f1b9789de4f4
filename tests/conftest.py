"""Fixtures shared by every test area: rendering the template into a project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
