"""Rendering the template into projects, for tests in every area."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PARTS = ("copier.yml", "template", "hooks", "extensions")

# Rendered projects commit with git: give every test a deterministic identity.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "CDL tests",
    "GIT_AUTHOR_EMAIL": "cdl-tests@example.invalid",
    "GIT_COMMITTER_NAME": "CDL tests",
    "GIT_COMMITTER_EMAIL": "cdl-tests@example.invalid",
}


def snapshot_template(dest: Path) -> Path:
    """Copy the template's working tree (uncommitted edits included) to ``dest``, without git."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ruff_cache", ".pytest_cache")
    for part in TEMPLATE_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=ignore)
        else:
            shutil.copy2(source, dest / part)
    return dest


def tagged_template_repository(dest: Path, tag: str) -> Path:
    """A snapshot of the template as a git repository: one commit, tagged ``tag``."""
    snapshot_template(dest)
    for args in (
        ("init", "--quiet", "--initial-branch=main"),
        ("add", "--all"),
        ("commit", "--quiet", "-m", f"template {tag}"),
        ("tag", tag),
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


RenderFn = Callable[..., Path]


def render(template: Path, dest: Path, answers: dict[str, Any], **kwargs: Any) -> Path:
    """Render ``template`` into ``dest`` with Copier's Python API (tasks included)."""
    from copier import run_copy

    env_backup = {key: os.environ.get(key) for key in GIT_IDENTITY}
    os.environ.update(GIT_IDENTITY)
    try:
        run_copy(
            str(template),
            str(dest),
            data={"project_name": "Demo project", **answers},
            defaults=True,
            unsafe=True,
            quiet=True,
            **kwargs,
        )
    finally:
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return dest


_SNAPSHOT: Path | None = None


def _template_snapshot() -> Path:
    """One git-free snapshot of the template per test process."""
    global _SNAPSHOT
    if _SNAPSHOT is None:
        import tempfile

        _SNAPSHOT = snapshot_template(Path(tempfile.mkdtemp(prefix="cdl-template-")))
    return _SNAPSHOT


def render_subtree(subdir: str, dest: Path, answers: dict[str, Any]) -> list[Path]:
    """Render the template with Copier (no tasks) and copy its ``subdir`` into ``dest``.

    For tests that need one folder of a project (``data``, ``model``, ``deployment`` ...)
    beside a ``cdl.yaml`` of their own: the files are exactly what Copier renders.
    """
    import tempfile

    from copier import run_copy

    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch) / "project"
        run_copy(
            str(_template_snapshot()),
            str(project),
            data={"project_name": "Demo project", **answers},
            defaults=True,
            unsafe=True,
            quiet=True,
            skip_tasks=True,
        )
        source = project / subdir
        written = []
        for path in sorted(source.rglob("*")):
            if path.is_file():
                target = dest / subdir / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                written.append(target)
    return written
