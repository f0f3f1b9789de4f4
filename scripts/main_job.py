"""The main job: a user's path through CDL with the BBC news starter, on the local profile.

Renders THIS repository with ``copier copy --trust`` (the answers of ``use_case_news/``,
the work tree as it is: ``--vcs-ref HEAD``) into a fresh folder outside this checkout (a new
temporary folder, or ``--workdir DIR``), checks that the project is a git repository with
``main`` and ``dev`` (``dev`` checked out), then runs the project's own commands, timing each
stage: the data pipeline (collect, split, clean + validate, labels), training, the evaluation
gate, packaging, the Seldon server on localhost, three predictions, the model report and the
lineage of the served version, and stops the server. The ``cdl`` of this repository's
environment runs the commands (what the project's ``make setup`` would install).

Data: ``$CDL_DATA_MIRROR`` (a path or file:// URL of bbc-fulltext.zip), else
``../shared/datasets/bbc-fulltext.zip`` next to this repository, else the canonical URL.

Usage: python scripts/main_job.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
USE_CASE = REPO / "use_case_news"
PROJECT = "bbc-news"
SHARED_MIRROR = REPO.parent / "shared" / "datasets" / "bbc-fulltext.zip"
CANONICAL_URL = "http://mlg.ucd.ie/files/datasets/bbc-fulltext.zip"
BIN = Path(sys.executable).parent

ARTICLES = [
    "Shares in the carmaker rose sharply after it reported quarterly profits well ahead of "
    "analysts' forecasts. The company said strong sales in Asia and lower costs lifted its "
    "operating margin, and it raised its dividend for the year. Investors welcomed the "
    "outlook, although the firm warned that higher interest rates could weigh on demand.",
    "The striker scored twice in the second half as the champions came from behind to win "
    "the derby and go three points clear at the top of the league. The manager praised his "
    "side's spirit and said the title race would go to the final weekend of the season, "
    "with injuries to two defenders his only worry before the cup tie.",
    "The new handset runs a faster chip and a redesigned operating system that lets users "
    "download software updates over mobile networks. The firm says its broadband service "
    "and online music store will reach more countries, while analysts expect rivals to cut "
    "the price of their phones and computers before Christmas.",
]


class StageFailed(RuntimeError):
    pass


def find_mirror() -> str:
    """The archive to collect from, or a clear error before anything runs."""
    explicit = os.environ.get("CDL_DATA_MIRROR")
    if explicit:
        path = Path(explicit.removeprefix("file://"))
        if not path.is_file():
            raise SystemExit(f"main job: CDL_DATA_MIRROR={explicit} does not exist")
        return explicit
    if SHARED_MIRROR.is_file():
        return str(SHARED_MIRROR)
    try:
        request = urllib.request.Request(CANONICAL_URL, method="HEAD")
        with urllib.request.urlopen(request, timeout=10):
            return ""
    except OSError as exc:
        raise SystemExit(
            f"main job: no local copy of the BBC archive and {CANONICAL_URL} is not reachable "
            f"({exc}).\nPoint the job at a local copy of bbc-fulltext.zip:\n"
            "  CDL_DATA_MIRROR=/path/to/bbc-fulltext.zip .venv/bin/python scripts/main_job.py"
        ) from None


def fresh_workdir(workdir: Path | None) -> Path:
    """``workdir`` (outside this checkout), or a new temporary folder."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="cdl-main-job-"))
    workdir = workdir.resolve()
    if workdir == REPO or workdir.is_relative_to(REPO):
        raise SystemExit(f"main job: --workdir {workdir} must be outside this checkout ({REPO})")
    workdir.mkdir(parents=True, exist_ok=True)
    project = workdir / PROJECT
    if project.exists():
        shutil.rmtree(project)
    return workdir


def use_case_answers(dest: Path) -> Path:
    """The news use case's answers (without Copier's own keys) as a --data-file."""
    answers = yaml.safe_load((USE_CASE / ".copier-answers.yml").read_text(encoding="utf-8"))
    data = {key: value for key, value in answers.items() if not key.startswith("_")}
    dest.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return dest


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def check_git_project(project: Path) -> None:
    """The render is a git repository of its own with ``main`` and ``dev`` checked out."""
    if not (project / ".git").is_dir():
        raise StageFailed(f"{project} is not a git repository")
    branches = sorted(git(project, "branch", "--format=%(refname:short)").split())
    current = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    if branches != ["dev", "main"] or current != "dev":
        raise StageFailed(f"{project}: branches {branches}, {current} checked out (want dev)")
    print(f"main job: {project} is a git repository: branches main and dev, dev checked out")


class Runner:
    """Runs stages in the project folder and keeps their wall times."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.timings: list[tuple[str, float]] = []

    def run(self, stage: str, *command: str, capture: bool = False, cwd: Path | None = None) -> str:
        print(f"\n=== {stage}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            command,
            cwd=cwd or self.project,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
        )
        self.timings.append((stage, time.perf_counter() - start))
        if capture and result.stdout:
            print(result.stdout, end="")
        if result.returncode != 0:
            raise StageFailed(f"stage '{stage}' failed with exit code {result.returncode}")
        return result.stdout or ""

    def print_timings(self) -> None:
        print("\n=== stage timings")
        for stage, seconds in self.timings:
            print(f"  {stage:<12} {seconds:7.1f} s")
        print(f"  {'total':<12} {sum(s for _, s in self.timings):7.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder outside this checkout to render into (default: a new temporary folder)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running (stop it with: cdl deploy stop)",
    )
    args = parser.parse_args(argv)

    mirror = find_mirror()
    workdir = fresh_workdir(args.workdir)
    project = workdir / PROJECT
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "CDL_PROFILE": "local",
    }
    env.pop("CDL_CONFIG", None)
    if mirror:
        env["CDL_DATA_MIRROR"] = mirror
    print(f"main job: project {project}\n          data    {mirror or CANONICAL_URL}")

    runner = Runner(project, env)
    cdl = str(BIN / "cdl")
    serving = False
    try:
        runner.run(
            "render",
            str(BIN / "copier"),
            "copy",
            "--trust",
            "--defaults",
            "--vcs-ref",
            "HEAD",
            "--data-file",
            str(use_case_answers(workdir / "answers.yml")),
            str(REPO),
            PROJECT,
            cwd=workdir,
        )
        check_git_project(project)
        runner.run("data", cdl, "data", "pipeline")
        runner.run("train", cdl, "model", "train")
        runner.run(
            "evaluate", str(BIN / "python"), "-m", "pytest", "-q", "test/test_model_accuracy.py"
        )
        runner.run("package", cdl, "deploy", "package")
        runner.run("serve", cdl, "deploy", "serve")
        serving = True
        runner.run("predict", cdl, "deploy", "predict", *ARTICLES)
        runner.run("report", cdl, "model", "report")
        runner.run("lineage", cdl, "lineage")
    except StageFailed as exc:
        print(f"\nmain job: {exc}", file=sys.stderr)
        return 1
    finally:
        if serving and not args.keep:
            runner.run("stop", cdl, "deploy", "stop")
        runner.print_timings()
    print(f"\nmain job: done. Reports: {project / 'reports'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
