"""Copier task: make the rendered project a git repository with `main` and `dev`.

The paper's workflow develops on `dev` and deploys production from `main`: the
project starts with one initial commit on `main` and `dev` branched from it,
checked out. Runs with the Python that runs Copier (stdlib only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

FALLBACK_IDENTITY = {
    "user.name": "CDL template",
    "user.email": "cdl-template@users.noreply.invalid",
}


def _git(project: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def _identity_args(project: Path) -> list[str]:
    """`-c user.name=...` options when git has no identity configured (CI, fresh machines)."""
    env_keys = {"user.name": "GIT_AUTHOR_NAME", "user.email": "GIT_AUTHOR_EMAIL"}
    missing = [key for key in FALLBACK_IDENTITY if not os.environ.get(env_keys[key])]
    if not missing:
        return []
    configured = subprocess.run(
        ["git", "config", "--get-regexp", r"^user\.(name|email)$"],
        cwd=project,
        capture_output=True,
        text=True,
    ).stdout
    keys = {line.split(" ", 1)[0] for line in configured.splitlines() if " " in line}
    return [
        arg
        for key in missing
        if key not in keys
        for arg in ("-c", f"{key}={FALLBACK_IDENTITY[key]}")
    ]


def init_repository(project: Path) -> None:
    """`git init -b main`, commit everything, create and check out `dev`."""
    if (project / ".git").exists():
        print(f"{project} is already a git repository: branches left as they are")
        return
    _git(project, "init", "--quiet", "--initial-branch=main")
    _git(project, "add", "--all")
    message = "Initial commit from the CDL template"
    _git(project, *_identity_args(project), "commit", "--quiet", "-m", message)
    _git(project, "checkout", "--quiet", "-b", "dev")
    print(f"git repository created in {project}: branches main and dev (checked out: dev)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path("."),
        help="the rendered project (default: the working directory, where Copier runs tasks)",
    )
    args = parser.parse_args(argv)
    project = args.project_dir.resolve()
    if not project.is_dir():
        print(f"project folder {project} does not exist", file=sys.stderr)
        return 1
    if shutil.which("git") is None:
        print(
            "git is not installed: the project was rendered but is not a git repository yet",
            file=sys.stderr,
        )
        return 1
    try:
        init_repository(project)
    except subprocess.CalledProcessError as exc:
        print(f"git {' '.join(exc.cmd[1:])} failed: {exc.stderr.strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
