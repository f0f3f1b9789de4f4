"""Wall time of `cdl template update` (what the template-update job runs) on a rendered project.

Usage: python benchmarks/template_update.py [--runs N] [--job]

A snapshot of this template tagged 0.2.0, then a README change tagged 0.3.0; per run, a news
project rendered at 0.2.0 and pushed to a bare repository, the GitLab API served by the
HTTP fake of the tests. Prints the median of: the first run (check-update, copier update,
commit, push, CHANGELOG, merge request), a second run (branch kept, merge request updated)
and a run on an up-to-date project (check-update only). The job's package install is not
included. With ``--job``, also the whole `template-update` job once under gitlab-ci-local
4.73.0 (shell executor, cdl-gitlab installed from a wheel of this work tree, offline; needs
the tools of scripts/install-ci-tools.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fakes.gitlab_api import FakeGitLab  # noqa: E402
from rendering import GIT_IDENTITY, render, snapshot_template  # noqa: E402

TOKEN = "glpat-benchmark"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def releases(root: Path) -> Path:
    template = snapshot_template(root / "template")
    git(template, "init", "-q", "-b", "main")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "0.2.0")
    git(template, "tag", "0.2.0")
    readme = template / "template" / "README.md.jinja"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nReleased in 0.3.0.\n")
    git(template, "commit", "-q", "-am", "0.3.0")
    git(template, "tag", "0.3.0")
    return template


def project_at(template: Path, root: Path, name: str, version: str) -> tuple[Path, Path]:
    project = render(template, root / name, {"starter": "news"}, vcs_ref=version)
    bare = root / "remotes" / "ml" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", str(bare))
    git(project, "push", "-q", str(bare), "main", "dev")
    return project, bare


def timed_update(project: Path, fake: FakeGitLab, name: str, remotes: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GIT_CONFIG"))}
    env.update(GIT_IDENTITY)
    env.update(
        CI_SERVER_URL=remotes.as_uri(),
        CI_API_V4_URL=f"{fake.url}/api/v4",
        CI_PROJECT_PATH=f"ml/{name}",
        CDL_TEMPLATE_UPDATE_TOKEN=TOKEN,
        PYTHONPATH=str(REPO / "ci-library" / "src"),
    )
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cdl_gitlab", "template", "update"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"cdl template update failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def job_under_gitlab_ci_local(root: Path, template: Path, fake: FakeGitLab) -> tuple[float, float]:
    """(job seconds, gitlab-ci-local seconds) of one scheduled `template-update` job."""
    sys.path.insert(0, str(REPO / "tests" / "ci"))
    import cdl_ci_harness as h

    missing = h.ensure_tools()
    if missing:
        raise SystemExit(f"CI tools missing (scripts/install-ci-tools.sh): {', '.join(missing)}")
    box = h.Sandbox(root / "gitlab")
    for version in ("0.2.0", "0.3.0"):
        box.publish_library(version)
    wheel = h.build_cdl_wheel(root / "wheel")
    project, bare = project_at(template, root, "job", "0.2.0")
    target = box.remotes / "ml" / "job.git"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(bare, target)
    box.attach_project(project, "ml/job", default_branch="dev")
    fake.add_project("ml/job")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    variables = (
        "CI_PIPELINE_SOURCE=schedule",
        "CDL_SCHEDULE=template-update",
        f"CI_API_V4_URL={fake.url}/api/v4",
        f"CDL_TEMPLATE_UPDATE_TOKEN={TOKEN}",
        f"CDL_SOURCE={wheel}",
        "CDL_PIP_INSTALL_ARGS=--no-index",
    )
    args = ["--force-shell-executor", "--shell-isolation"]
    args += ["--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_API_V4_URL"]
    for variable in variables:
        args += ["--variable", variable]
    start = time.perf_counter()
    result = h.run_gcl(
        project, *args, "template-update", sandbox=box, extra_env={"PATH": path, "PYTHONPATH": ""}
    )
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"template-update job failed:\n{output[-4000:]}")
    return h.job_durations(output).get("template-update", float("nan")), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--job", action="store_true", help="also the job under gitlab-ci-local")
    args = parser.parse_args()
    os.environ.update(GIT_IDENTITY)
    first, second, current = [], [], []
    with tempfile.TemporaryDirectory() as scratch, FakeGitLab(token=TOKEN) as fake:
        root = Path(scratch)
        template = releases(root)
        for run in range(args.runs):
            name = f"bench-{run}"
            fake.add_project(f"ml/{name}")
            project, _ = project_at(template, root, name, "0.2.0")
            first.append(timed_update(project, fake, name, root / "remotes"))
            git(project, "checkout", "-q", "dev")
            second.append(timed_update(project, fake, name, root / "remotes"))
            name = f"current-{run}"
            fake.add_project(f"ml/{name}")
            project, _ = project_at(template, root, name, "0.3.0")
            current.append(timed_update(project, fake, name, root / "remotes"))
        job = job_under_gitlab_ci_local(root, template, fake) if args.job else None
    for label, timings in (
        ("update 0.2.0 -> 0.3.0, merge request created", first),
        ("second run, merge request updated", second),
        ("up-to-date project (check-update only)", current),
    ):
        print(
            f"cdl template update, {label}: median {statistics.median(timings):.2f} s, "
            f"min {min(timings):.2f} s, max {max(timings):.2f} s over {len(timings)} runs"
        )
    if job is not None:
        print(
            f"template-update job under gitlab-ci-local (package install included): "
            f"{job[0]:.2f} s; gitlab-ci-local in all {job[1]:.2f} s"
        )


if __name__ == "__main__":
    main()
