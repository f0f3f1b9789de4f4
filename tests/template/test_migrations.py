"""`_migrations`: a project rendered before the package rename (0.1.0, commit 837be50) is
updated to 0.2.0 and keeps no `cdl` import or requirement; its Python still compiles."""

from __future__ import annotations

import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from copier import run_update

from rendering import REPO_ROOT, render

RELEASE_010 = "837be50"  # the last commit before the rename, version 0.1.0
sys.path.insert(0, str(REPO_ROOT / "hooks"))
from migrate_cdl_gitlab import rewrite  # noqa: E402

OLD_IMPORT = re.compile(r"^\s*(from\s+cdl(\.|\s+import)|import\s+cdl(\.|\s|,|$))", re.M)
OLD_REQUIREMENT = re.compile(r"(?<![\w./$-])cdl(\[|==)")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def tracked_files(root: Path) -> list[str]:
    return [f for f in git(root, "ls-files", "-co", "--exclude-standard").splitlines() if f]


def template_history(dest: Path) -> Path:
    """This repository's history with 837be50 tagged 0.1.0 and this work tree (uncommitted
    edits included) committed on top of it and tagged 0.2.0."""
    git(REPO_ROOT.parent, "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(dest))
    git(dest, "checkout", "--quiet", "-B", "release", RELEASE_010)
    git(dest, "tag", "0.1.0", RELEASE_010)
    for rel in tracked_files(dest):
        (dest / rel).unlink()
    for rel in tracked_files(REPO_ROOT):
        source = REPO_ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "-m", "template 0.2.0")
    git(dest, "tag", "0.2.0")
    return dest


def test_update_across_the_rename_migrates_imports_and_requirements(tmp_path: Path) -> None:
    template = template_history(tmp_path / "template")
    project = render(template, tmp_path / "project", {"starter": "news"}, vcs_ref="0.1.0")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "0.1.0"
    rendered_before = (project / "model" / "model_def.py").read_text()
    assert "from cdl.model" in rendered_before, "0.1.0 imports the old package"

    # The user's own module and requirements, committed on dev.
    (project / "model" / "helpers.py").write_text(
        '"""Helpers built on ``cdl.features``."""\n'
        "import cdl.config\n"
        "from cdl.features.text import stems\n"
        "from cdl import errors\n\n"
        "LABEL = 'cdl.dev/environment'\n\n\n"
        "def words(text: str) -> list[str]:\n"
        "    return stems(text)\n",
        encoding="utf-8",
    )
    (project / "requirements-extra.txt").write_text("cdl[serve]==0.1.0\nrequests\n")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "My helpers")

    run_update(
        str(project),
        vcs_ref="0.2.0",
        data={"ci_library_version": "0.2.0"},
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
    )

    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "0.2.0"
    # the files the project has after the update (0.2.0 removed the data/collect.py and
    # data/split.py shims: the library runs those steps itself)
    present = [f for f in tracked_files(project) if (project / f).is_file()]
    assert not (project / "data" / "collect.py").exists()
    python_files = [f for f in present if f.endswith(".py")]
    assert "model/helpers.py" in python_files
    for rel in present:
        text = (project / rel).read_text(encoding="utf-8", errors="replace")
        assert not OLD_IMPORT.search(text), f"{rel} still imports cdl"
        if rel != ".copier-answers.yml":
            assert not OLD_REQUIREMENT.search(text), f"{rel} still requires cdl"
    for rel in python_files:
        py_compile.compile(str(project / rel), doraise=True)
    helpers = (project / "model" / "helpers.py").read_text()
    assert "import cdl_gitlab.config" in helpers
    assert "from cdl_gitlab.features.text import stems" in helpers
    assert "from cdl_gitlab import errors" in helpers
    assert "``cdl_gitlab.features``" in helpers
    assert "'cdl.dev/environment'" in helpers  # a label, not the package
    assert (project / "requirements-extra.txt").read_text().startswith("cdl-gitlab[serve]==")


def test_the_migration_renames_the_package_and_nothing_else() -> None:
    before = (
        "from cdl.model.train import train_from_cli\n"
        "import cdl, os\n"
        "python -m cdl data lint\n"
        'ARG CDL_REQUIREMENT="cdl[serve,train-torch]"\n'
        "pip install cdl==0.1.0\n"
        "cdl data pipeline --config cdl.yaml\n"
        "    cdl.dev/model-version: ${model_version}\n"
        "cdl_requirement: x\n"
        "from cdl_gitlab.config import load_settings\n"
    )
    assert rewrite(before) == (
        "from cdl_gitlab.model.train import train_from_cli\n"
        "import cdl_gitlab, os\n"
        "python -m cdl_gitlab data lint\n"
        'ARG CDL_REQUIREMENT="cdl-gitlab[serve,train-torch]"\n'
        "pip install cdl-gitlab==0.1.0\n"
        "cdl data pipeline --config cdl.yaml\n"
        "    cdl.dev/model-version: ${model_version}\n"
        "cdl_requirement: x\n"
        "from cdl_gitlab.config import load_settings\n"
    )
    assert rewrite(rewrite(before)) == rewrite(before)  # idempotent
