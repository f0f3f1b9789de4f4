"""Fixtures of the CI component tests (tests/ci): tools, a fake GitLab instance, renders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cdl_ci_harness as h


@pytest.fixture(scope="session")
def ci_tools() -> None:
    """gitlab-ci-local 4.73.0, check-jsonschema, rsync (from scripts/install-ci-tools.sh)."""
    missing = h.ensure_tools()
    if missing:
        message = f"CI tools missing (run scripts/install-ci-tools.sh): {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI a missing tool is a broken set-up, not a skip
        pytest.skip(message)


@pytest.fixture(scope="session")
def library_version() -> str:
    return h.cdl_version()


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, ci_tools: None, library_version: str
) -> h.Sandbox:
    """A fake gitlab.example.com whose cdl/ci-library has this work tree's components at a tag."""
    box = h.Sandbox(tmp_path_factory.mktemp("gitlab"))
    box.publish_library(library_version)
    return box


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory, sandbox: h.Sandbox) -> Path:
    """This work tree's Copier template as a clean repository (fast to render from)."""
    return h.snapshot_template(tmp_path_factory.mktemp("template") / "cdl", sandbox)
