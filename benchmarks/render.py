"""Median time to render one project with Copier's Python API (goal: under 1 s).

Usage: python benchmarks/render.py [--runs N]
Renders a git-free snapshot of the template, tasks included (git init, main + dev).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rendering import render, snapshot_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        template = snapshot_template(root / "template")
        for starter, framework in (("news", "pytorch"), ("fashion", "keras")):
            timings = []
            for run in range(args.runs):
                start = time.perf_counter()
                render(
                    template,
                    root / f"{starter}-{run}",
                    {"starter": starter, "framework": framework},
                )
                timings.append(time.perf_counter() - start)
            print(
                f"render {starter}/{framework}: median {statistics.median(timings):.3f} s, "
                f"min {min(timings):.3f} s, max {max(timings):.3f} s over {args.runs} runs "
                "(goal: median < 1 s)"
            )


if __name__ == "__main__":
    main()
