"""`copier copy --trust` with the real CLI, from a fresh working directory, to any destination."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rendering import REPO_ROOT

COPIER = Path(sys.executable).parent / "copier"
sys.path.insert(0, str(REPO_ROOT / "extensions"))

from cdl_filters import slugify  # noqa: E402


def copier_copy(template: Path | str, dest: str, cwd: Path, *answers: str) -> None:
    data = [arg for answer in ("project_name=Demo project", *answers) for arg in ("-d", answer)]
    result = subprocess.run(
        [str(COPIER), "copy", "--trust", "--defaults", *data, str(template), dest],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("my-project", "my-project"),
        ("./my-project", "my-project"),
        (".", "."),
        ("Mein Projekt/Prüfung Ünïcode", "Mein Projekt/Prüfung Ünïcode"),
    ],
    ids=["relative", "dot-relative", "dot", "spaces-and-unicode"],
)
def test_any_destination_becomes_a_git_project(
    template_dir: Path, tmp_path: Path, dest: str, expected: str
):
    cwd = tmp_path / "fresh cwd"
    cwd.mkdir()
    copier_copy(template_dir, dest, cwd)
    project = cwd / expected
    for name in ("cdl.yaml", "Makefile", "README.md", "tools/install_cdl.py", "model/const.yaml"):
        assert (project / name).is_file(), f"{name} was not rendered"
    assert sorted(git(project, "branch", "--format=%(refname:short)").split()) == ["dev", "main"]
    assert git(project, "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert git(project, "status", "--porcelain") == ""
    assert answers(project)["project_slug"] == "demo-project"


def test_an_absolute_destination_works_too(template_dir: Path, tmp_path: Path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    copier_copy(template_dir, str(tmp_path / "abs-project"), cwd, "starter=news")
    assert git(tmp_path / "abs-project", "rev-parse", "--abbrev-ref", "HEAD") == "dev"


def test_a_relative_template_path_is_recorded_absolute(template_dir: Path, tmp_path: Path):
    """`make setup` and `copier update` run from the project, not from where Copier ran."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    copier_copy(os.path.relpath(template_dir, cwd), "proj", cwd)
    assert answers(cwd / "proj")["_src_path"] == str(template_dir.resolve())


def test_slugs_transliterate_letters_instead_of_dropping_them(template_dir: Path, tmp_path: Path):
    copier_copy(template_dir, "p", tmp_path, "project_name=Prüfung Ünïcode")
    recorded = answers(tmp_path / "p")
    assert recorded["project_slug"] == "prufung-unicode"
    assert recorded["model_name"] == "prufung-unicode"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Prüfung Ünïcode", "prufung-unicode"),
        ("Straße & Ærø", "strasse-aero"),
        ("Łódź Café  -- v2", "lodz-cafe-v2"),
        ("  ÉCOLE  ", "ecole"),
        ("news", "news"),
    ],
)
def test_slugify(name: str, slug: str):
    assert slugify(name) == slug


def test_the_git_template_records_its_commit(tmp_path: Path):
    """Rendering this repository itself (as the README says) records where it came from."""
    copier_copy(REPO_ROOT, "from-repo", tmp_path)
    recorded = answers(tmp_path / "from-repo")
    assert recorded["_src_path"] == str(REPO_ROOT)
    assert recorded["_commit"]


def test_the_template_needs_a_copier_with_the_security_fixes():
    """Copier 9.17.1/9.17.2 fixed a Jinja sandbox escape and code execution via YAML tags."""
    from packaging.version import Version

    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    assert Version(config["_min_copier_version"]) >= Version("9.17.2")
    assert Version(__import__("copier").__version__) >= Version(config["_min_copier_version"])
