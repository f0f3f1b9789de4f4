"""`copier update` runs on a copy of each use case against this repository's template."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rendering import REPO_ROOT, tagged_template_repository

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import render_use_cases

COPIER = Path(sys.executable).parent / "copier"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def template_repository(path: Path) -> Path:
    """This work tree's template as a git repository: tag 1.0.0, then 1.1.0 with one change."""
    tagged_template_repository(path, "1.0.0")
    gitignore = path / "template" / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "# added in 1.1.0\n*.onnx\n")
    git(path, "commit", "--quiet", "-am", "template 1.1.0")
    git(path, "tag", "1.1.0")
    return path


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_repository(tmp_path_factory.mktemp("template-repo") / "cdl")


def files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


@pytest.mark.parametrize("name", render_use_cases.USE_CASES)
def test_the_committed_answers_point_at_this_repository(name: str):
    answers = yaml.safe_load((REPO_ROOT / name / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == ".."
    assert answers["_commit"] == "HEAD"
    assert ((REPO_ROOT / name / answers["_src_path"]) / "copier.yml").is_file()


@pytest.mark.parametrize("name", render_use_cases.USE_CASES)
def test_copier_update_on_a_copy_of_the_use_case(name: str, template_repo: Path, tmp_path: Path):
    project = tmp_path / name
    shutil.copytree(
        REPO_ROOT / name, project, ignore=shutil.ignore_patterns(".cdl", "__pycache__", ".venv")
    )
    answers_file = project / ".copier-answers.yml"
    answers = answers_file.read_text()
    answers_file.write_text(
        answers.replace("_src_path: ..", f"_src_path: {template_repo}").replace(
            "_commit: HEAD", "_commit: 1.0.0"
        )
    )
    git(project, "init", "--quiet", "--initial-branch=dev")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "the use case")
    before = files(project)

    result = subprocess.run(
        [str(COPIER), "update", "--trust", "--defaults"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    after = files(project)
    assert "*.onnx" in after[".gitignore"].decode(), "the template's change did not arrive"
    assert yaml.safe_load(after[".copier-answers.yml"])["_commit"] == "1.1.0"
    changed = sorted(path for path in before if after.get(path) != before[path])
    assert changed == [".copier-answers.yml", ".gitignore"], changed
    assert "USE_CASE.md" in after, "the use case's own file was lost"
