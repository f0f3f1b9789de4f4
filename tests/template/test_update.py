"""`copier update` from an older tagged template keeps the user's edits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from copier import run_update

from rendering import render, tagged_template_repository


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_update_to_a_new_template_version_keeps_user_edits(tmp_path: Path):
    template = tagged_template_repository(tmp_path / "template", "0.1.0")
    project = render(template, tmp_path / "project", {"starter": "news"}, vcs_ref="0.1.0")
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "0.1.0"

    # The user changes a setting and commits on dev.
    config = project / "cdl.yaml"
    config.write_text(config.read_text().replace("replicas: 1", "replicas: 3"))
    git(project, "commit", "--quiet", "-am", "Scale to three replicas")

    # The template changes elsewhere in the same file and adds an ignore rule: release 0.2.0.
    config_template = template / "template" / "cdl.yaml.jinja"
    config_template.write_text(
        config_template.read_text().replace("  local_port: 9000\n", "  local_port: 9100\n")
    )
    gitignore = template / "template" / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "# added in 0.2.0\n*.onnx\n")
    git(template, "commit", "--quiet", "-am", "template 0.2.0")
    git(template, "tag", "0.2.0")

    run_update(str(project), defaults=True, overwrite=True, unsafe=True, quiet=True)

    updated = config.read_text()
    assert "replicas: 3" in updated, "the user's edit was lost"
    assert "local_port: 9100" in updated, "the template's change did not arrive"
    assert "*.onnx" in (project / ".gitignore").read_text()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "0.2.0"
    # The git tasks ran only on copy: still one commit on main, no extra branches.
    assert git(project, "rev-list", "--count", "main") == "1"
    assert sorted(git(project, "branch", "--format=%(refname:short)").split()) == ["dev", "main"]
