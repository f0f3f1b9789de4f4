"""The main job: the BBC news use case's whole workflow on the local profile.

Copies ``use_case_news/`` (a project rendered from the template) into ``out/main-job/``,
then runs, timing each stage: the data pipeline (collect, split, clean + validate, labels),
training, the evaluation gate, packaging, the Seldon server on localhost, three predictions,
the model report and the lineage of the served version, and stops the server.

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
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USE_CASE = REPO / "use_case_news"
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


def prepare_project(workdir: Path) -> Path:
    """A fresh copy of the use case with a clean local profile state."""
    project = workdir / "bbc-news"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(USE_CASE, project, ignore=shutil.ignore_patterns(".cdl", "__pycache__"))
    return project


class Runner:
    """Runs stages in the project folder and keeps their wall times."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.timings: list[tuple[str, float]] = []

    def run(self, stage: str, *command: str, capture: bool = False) -> str:
        print(f"\n=== {stage}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            command,
            cwd=self.project,
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
    parser.add_argument("--workdir", type=Path, default=REPO / "out" / "main-job")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running (stop it with: cdl deploy stop)",
    )
    args = parser.parse_args(argv)

    mirror = find_mirror()
    project = prepare_project(args.workdir.resolve())
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
