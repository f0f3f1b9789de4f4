"""Wall time of a rendered project's whole ``dev`` pipeline under gitlab-ci-local.

Renders the news starter on the local profile from this work tree, publishes this work
tree's CI components to a fake GitLab instance (bare repositories reached through git's
``url.<file-url>.insteadOf``), generates a tiny dataset, and runs the ``dev`` pipeline with
gitlab-ci-local 4.73.0 (shell executor, jobs isolated, artifacts passed between jobs, the
manual training job started): data -> train -> evaluate -> compress -> package + local serve
+ smoke test. Prints the wall time of every job, the part of it the cdl setup took (the
shared ``before_script``: a pip install into a new virtual environment, or the environment
another job left in the cache), and of the whole pipeline (goal of issue 18: at most 60 s on
2 cores). The jobs' Python is this environment's, so cdl's dependencies are installed already.

    .venv/bin/python benchmarks/pipeline.py [--per-class 24] [--runs 2] [--keep]

``--runs N`` runs the pipeline N times in the same project, as N pushes would: GitLab keeps
the jobs' cache between pipelines (gitlab-ci-local keeps it in the project's
``.gitlab-ci-local/``), so from the second run on the jobs reuse the cached environments.

Needs the tools of scripts/install-ci-tools.sh (installed when missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ci"))

import cdl_ci_harness as h

GOAL_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=24, help="generated articles per class")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument(
        "--runs", type=int, default=1, help="pipelines in a row (the cache is kept between them)"
    )
    args = parser.parse_args(argv)

    missing = h.ensure_tools()
    if missing:
        print(
            f"missing tools: {', '.join(missing)} (run scripts/install-ci-tools.sh)",
            file=sys.stderr,
        )
        return 2
    root = Path(tempfile.mkdtemp(prefix="cdl-pipeline-bench-"))
    try:
        sandbox = h.Sandbox(root / "gitlab")
        version = h.cdl_version()
        sandbox.publish_library(version)
        template = h.snapshot_template(root / "template", sandbox)
        (project, setup_s) = h.timed(h.prepare_local_project, root, sandbox, template, version)
        wheel = h.build_cdl_wheel(root / "wheel")
        archive = h.make_news_archive(
            root / "mirror" / "bbc-fulltext.zip", per_class=args.per_class
        )
        print(
            f"rendered project pipeline (dev, local profile), {len(h.NEWS_CLASSES)} classes x "
            f"{args.per_class} articles, {os.cpu_count()} CPUs, gitlab-ci-local {h.GCL_VERSION}"
        )
        print(f"render + commit: {setup_s:.1f} s")
        for number in range(1, args.runs + 1):
            run = h.run_local_pipeline(project, sandbox, wheel, archive, "--timestamps")
            cache = "cold cache" if number == 1 else "cache of the earlier runs"
            print(f"\n-- run {number} of {args.runs} ({cache})")
            if not _print_run(run):
                return 1
        return 0
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _print_run(run: h.PipelineRun) -> bool:
    setup = h.setup_durations(run.output)
    print(f"{'job':<24} {'status':<9} {'wall s':>8} {'setup s':>8}")
    for job, seconds in run.durations.items():
        if job == "pipeline":
            continue
        in_setup = f"{setup[job]:>8.1f}" if job in setup else f"{'-':>8}"
        print(f"{job:<24} {run.status.get(job, '-'):<9} {seconds:>8.1f} {in_setup}")
    total = run.durations.get("pipeline", run.wall_seconds)
    print(f"{'pipeline (gitlab-ci-local)':<34} {total:>8.1f}")
    print(f"{'pipeline (wall, incl. parsing)':<34} {run.wall_seconds:>8.1f}")
    if run.result.returncode != 0:
        print("\nthe pipeline failed; the end of its log:\n" + run.output[-6000:], file=sys.stderr)
        return False
    verdict = "within" if run.wall_seconds <= GOAL_SECONDS else "over"
    print(f"goal {GOAL_SECONDS:.0f} s: {verdict}")
    return True


if __name__ == "__main__":
    sys.exit(main())
