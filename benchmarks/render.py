"""Render times of the template, and the main job's stage timings.

1. Copier's Python API (``run_copy``, tasks included: git init with main + dev) on a git-free
   snapshot of the template: median per starter (goal: under 1 s).
2. The whole process, as a user types it: ``copier copy --trust --defaults <src> <dest>``
   (interpreter start, Jinja extensions, questions, files, tasks), median of N, for
   - a one-file Copier template made in a temporary folder (the baseline),
   - a git-free snapshot of this template (a local folder),
   - this repository itself (a local git repository: Copier clones it, with the work
     tree's uncommitted changes),
   each also as a ratio to the baseline (goal: at most 1.5x).
3. With ``--main-job``: ``scripts/main_job.py`` on the data mirror it finds
   (``CDL_DATA_MIRROR``, ``../shared/datasets/bbc-fulltext.zip``, the canonical URL), which
   prints its stage timings.

Usage: python benchmarks/render.py [--runs N] [--main-job]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from rendering import GIT_IDENTITY, render, snapshot_template  # noqa: E402

BIN = Path(sys.executable).parent
GOAL_RATIO = 1.5


def one_file_template(root: Path) -> Path:
    """The smallest Copier template: one question, one templated file."""
    root.mkdir(parents=True)
    (root / "copier.yml").write_text("project_name:\n  type: str\n  default: demo\n")
    (root / "README.md.jinja").write_text("# {{ project_name }}\n")
    return root


def time_api(root: Path, template: Path, runs: int) -> None:
    for starter, framework in (("news", "pytorch"), ("fashion", "keras")):
        timings = []
        for run in range(runs):
            start = time.perf_counter()
            render(template, root / f"api-{starter}-{run}", {"starter": starter})
            timings.append(time.perf_counter() - start)
        print(
            f"run_copy {starter}/{framework}: median {statistics.median(timings):.3f} s, "
            f"min {min(timings):.3f} s, max {max(timings):.3f} s over {runs} runs "
            "(goal: median < 1 s)"
        )


def time_cli(root: Path, name: str, template: Path, runs: int) -> float:
    """Median wall time of ``copier copy --trust --defaults`` as a new process."""
    env = {**os.environ, **GIT_IDENTITY}
    timings = []
    for run in range(runs):
        cwd = root / f"{name}-{run}"
        cwd.mkdir()
        start = time.perf_counter()
        subprocess.run(
            [
                str(BIN / "copier"),
                "copy",
                "--trust",
                "--defaults",
                "--quiet",
                "-d",
                "project_name=Bench project",
                str(template),
                "project",
            ],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    print(
        f"copier copy --trust, {name}: median {median:.3f} s, min {min(timings):.3f} s, "
        f"max {max(timings):.3f} s over {runs} runs"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--main-job", action="store_true", help="also run the main job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        template = snapshot_template(root / "template")
        time_api(root, template, args.runs)
        baseline = time_cli(root, "one-file template", one_file_template(root / "one"), args.runs)
        for name, source in (("CDL snapshot (folder)", template), ("CDL repository (git)", REPO)):
            median = time_cli(root, name, source, args.runs)
            print(
                f"  {name}: {median / baseline:.2f}x the one-file template (goal: <= {GOAL_RATIO}x)"
            )
    if args.main_job:
        print("\nmain job (stage timings below):", flush=True)
        subprocess.run([sys.executable, str(REPO / "scripts" / "main_job.py")], check=True)


if __name__ == "__main__":
    main()
