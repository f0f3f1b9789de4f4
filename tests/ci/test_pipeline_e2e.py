"""End to end: a rendered project's whole pipeline under gitlab-ci-local 4.73.0, offline.

Render the news starter (local profile), commit the tiny-dataset settings on ``dev``, resolve
the components from the fake instance (a bare repository of this work tree's library, reached
through ``url.<file-url>.insteadOf``), and run the whole ``dev`` pipeline with the shell
executor: data -> train -> register -> evaluate -> compress -> package + serve + smoke test,
the ``.cdl/`` state passed between jobs as artifacts. Then the production deploy on ``main``,
started twice, serves the version ``deploy-select`` decided both times; on ``main`` the
production deploy job is there and manual, and a change only under ``docs/`` runs nothing.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import cdl_ci_harness as h
import pytest

DEV_JOBS = (
    "data-lint",
    "data-pipeline",
    "data-labels",
    "model-lint",
    "model-train",
    "model-evaluate",
    "deploy-compress",
    "deploy-select",
    "deploy-staging",
)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_rendered_project_pipeline_runs_end_to_end_on_the_local_profile(
    sandbox: h.Sandbox, template_repo: Path, library_version: str, tmp_path: Path
) -> None:
    assert not _port_open(9000), "port 9000 is taken: the local deploy job serves there"
    project = h.prepare_local_project(tmp_path, sandbox, template_repo, library_version)
    wheel = h.build_cdl_wheel(tmp_path / "wheel")
    archive = h.make_news_archive(tmp_path / "mirror" / "bbc-fulltext.zip")

    run = h.run_local_pipeline(project, sandbox, wheel, archive)
    report = "\n".join(
        f"  {job}: {run.status.get(job, '-')} {run.durations.get(job, 0):.1f} s" for job in DEV_JOBS
    )
    print(f"dev pipeline: {run.wall_seconds:.1f} s\n{report}")
    assert run.result.returncode == 0, run.output[-12000:]
    for job in DEV_JOBS:
        assert run.status.get(job) == "success", (
            f"{job}: {run.status.get(job)}\n{run.output[-12000:]}"
        )

    artifacts = project / ".gitlab-ci-local" / "artifacts"
    # the data store travelled from the data jobs to training and on
    assert any((artifacts / "data-pipeline" / ".cdl").iterdir())
    assert any((artifacts / "model-train" / ".cdl").iterdir())
    evaluation = artifacts / "model-evaluate" / "reports" / "model"
    for name in ("junit.xml", "metrics.txt", "report.md", "model-card.md"):
        assert (evaluation / name).is_file(), f"model-evaluate artifact {name}"
    assert "<testsuite" in (evaluation / "junit.xml").read_text(encoding="utf-8")
    assert "accuracy" in (evaluation / "metrics.txt").read_text(encoding="utf-8")
    # the smoke test got an answer, and the server did not outlive the job
    staging_log = "\n".join(
        line for line in run.output.splitlines() if line.startswith("deploy-staging")
    )
    assert "cdl deploy predict" in staging_log, staging_log[-4000:]
    assert re.search(r"\(model news-e2e v\d+\)", staging_log), staging_log[-4000:]  # answered
    # the staging deploy served the version deploy-select decided
    select_log = "\n".join(
        line for line in run.output.splitlines() if line.startswith("deploy-select")
    )
    decided = re.search(r"CDL_DEPLOY_VERSION=(\d+)", select_log)
    assert decided, select_log[-4000:]
    assert f"(model news-e2e v{decided.group(1)})" in staging_log, staging_log[-4000:]
    assert not _port_open(9000)

    # main: the production gate, started twice, serves the one version deploy-select decided
    # both times (the selection and the production deploy on the gated registry of this run)
    served = []
    for _ in range(2):
        production = h.run_local_pipeline(
            project,
            sandbox,
            wheel,
            archive,
            *h.branch_vars("main"),
            "deploy-select",
            "deploy-production",
        )
        assert production.status.get("deploy-production") == "success", production.output[-8000:]
        chosen = re.search(r"CDL_DEPLOY_VERSION=(\d+)", production.output)
        answered = re.search(
            r"deploy-production\s*> .*\(model news-e2e v(\d+)\)", production.output
        )
        assert chosen and answered, production.output[-8000:]
        served.append((chosen.group(1), answered.group(1)))
    assert served[0] == served[1] and served[0][0] == served[0][1] == decided.group(1)
    assert not _port_open(9000)

    # main: merging dev brings the gates again and the production deploy, manual
    sandbox.git("checkout", "-q", "main", cwd=project)
    sandbox.git("merge", "-q", "--ff-only", "dev", cwd=project)
    main = {n: j["when"] for n, j in h.list_jobs(project, sandbox=sandbox).items()}
    assert main["deploy-production"] == "manual"
    assert main["deploy-staging"] == "never"
    assert main["model-train"] == main["deploy-select"] == "on_success"

    # a push to main that only changes docs/ runs none of the heavy jobs
    sandbox.set_default_branch(project, "dev", "main")
    (project / "docs").mkdir(exist_ok=True)
    (project / "docs" / "changes.md").write_text("# Changes\n", encoding="utf-8")
    sandbox.git("add", "docs", cwd=project)
    sandbox.git("commit", "-q", "-m", "docs only", cwd=project)
    docs = {n: j["when"] for n, j in h.list_jobs(project, sandbox=sandbox).items()}
    # (the light template-conflicts check runs on every push: an update can leave markers)
    assert docs["template-conflicts"] == "on_success"
    assert {n for n, w in docs.items() if w != "never"} == {"template-conflicts"}
