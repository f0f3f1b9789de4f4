"""The monitoring loop end to end: a scheduled pipeline of a rendered project, offline.

The served model is a registered version with its reference statistics and the Scoring Data
its server wrote (records as the serving wrapper writes them; drifted: shorter texts of words
no class knows). A scheduled pipeline (``CDL_SCHEDULE`` unset, so `monitor`) of the rendered
news project runs under gitlab-ci-local with the shell executor: only ``monitoring-report``
runs; it writes the drift verdict and files exactly one issue through python-gitlab against
the fake GitLab (HTTP boundary); a second run adds a note to that issue; Scoring Data without
drift files none.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cdl_ci_harness as h
import numpy as np
import pytest

sys.path.insert(0, str(h.REPO_ROOT / "tests" / "monitor"))

from monitor_data import make_texts, records, text_features, text_probabilities

from cdl_gitlab.config import load_settings
from cdl_gitlab.monitor.issue import LABEL
from cdl_gitlab.monitor.reference import attach_reference, compute_reference
from cdl_gitlab.registry import Checkpoint, open_registry
from cdl_gitlab.scoring import open_scoring_store
from fakes.gitlab_api import FakeGitLab

TOKEN = "glpat-report-token-for-tests"
SERVED_CONFIG = """\
version: 1
project: {name: News, slug: news}
profile: local
model: {name: news, framework: pytorch, task: text, classes: [business, sport, tech]}
data: {repo_prefix: news}
training: {accuracy_threshold: 0.8}
monitoring: {enabled: true, min_samples: 100, min_labels: 20}
cluster: {gitlab_token_env: CDL_REPORT_TOKEN}
"""


def _served(root: Path, drifted: bool) -> Path:
    """A served version 1 of ``news``: registry with reference statistics, Scoring Data."""
    root.mkdir(parents=True)
    config = root / "cdl.yaml"
    config.write_text(SERVED_CONFIG, encoding="utf-8")
    settings = load_settings(config)
    checkpoint = root / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "weights.bin").write_bytes(b"w")
    registry = open_registry(settings)
    registry.register_version("news", Checkpoint("ckpt-1", checkpoint), {})
    texts, labels = make_texts(400, np.random.default_rng(0))
    reference = compute_reference(
        "text", texts, text_probabilities(texts), text_features(), labels=labels
    )
    attach_reference(registry, "news", 1, reference)
    live, _ = make_texts(400, np.random.default_rng(1), shifted=drifted)
    open_scoring_store(settings).write(
        records("text", live, text_probabilities(live), features=text_features(), batch=4)
    )
    return config


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: h.Sandbox,
    template_repo: Path,
    library_version: str,
) -> Path:
    root = tmp_path_factory.mktemp("monitoring-loop")
    rendered = root / "news"
    answers = {"project_name": "News", "starter": "news", "ci_library_version": library_version}
    result = h.render_project(rendered, sandbox, answers, template=template_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    sandbox.attach_project(rendered, "ml/news-monitoring")
    sandbox.set_default_branch(rendered, "dev")
    return rendered


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.build_cdl_wheel(tmp_path_factory.mktemp("wheel"))


def _scheduled_pipeline(
    project: Path, sandbox: h.Sandbox, wheel: Path, config: Path, gitlab: FakeGitLab
) -> h.PipelineRun:
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    args = (
        "--force-shell-executor",
        "--shell-isolation",
        "--no-artifacts-to-source",
        # a schedule on main; the fake GitLab stands in for the instance (URL, project)
        "--ignore-predefined-vars",
        "CI_COMMIT_BRANCH,CI_COMMIT_REF_NAME,CI_PIPELINE_SOURCE,CI_SERVER_URL,CI_PROJECT_ID",
        "--variable",
        "CI_COMMIT_BRANCH=main",
        "--variable",
        "CI_PIPELINE_SOURCE=schedule",
        "--variable",
        f"CDL_SOURCE={wheel}",
        "--variable",
        "CDL_PIP_INSTALL_ARGS=--no-index",
        "--variable",
        f"CDL_CONFIG={config}",
        "--variable",
        f"CI_SERVER_URL={gitlab.url}",
        "--variable",
        "CI_PROJECT_ID=ml/news",
        "--variable",
        f"CDL_REPORT_TOKEN={TOKEN}",
    )
    result, wall = h.timed(
        h.run_gcl,
        project,
        *args,
        sandbox=sandbox,
        extra_env={
            "PATH": path,
            "PYTHONPATH": "",
        },
    )
    output = result.stdout + result.stderr
    return h.PipelineRun(result, wall, h.job_durations(output), h.job_summary(output))


def _verdict(project: Path) -> dict:
    folder = project / ".gitlab-ci-local" / "artifacts" / "monitoring-report"
    return json.loads((folder / "reports" / "monitoring" / "verdict.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_scheduled_monitoring_files_one_issue_then_a_note_and_none_without_drift(
    project: Path, sandbox: h.Sandbox, wheel: Path, tmp_path: Path
) -> None:
    drifted = _served(tmp_path / "drifted", drifted=True)
    with FakeGitLab(token=TOKEN) as gitlab:
        gitlab.add_project("ml/news")
        pid = gitlab.project("ml/news")["id"]

        first = _scheduled_pipeline(project, sandbox, wheel, drifted, gitlab)
        print(f"scheduled monitoring pipeline: {first.wall_seconds:.1f} s")
        assert first.result.returncode == 0, first.output[-8000:]
        assert first.status == {"monitoring-report": "success"}, first.output[-8000:]
        verdict = _verdict(project)
        assert verdict["verdict"] == "drift" and verdict["re_entry"]["pipeline"] == "data"
        issues = gitlab.state.issues[pid]
        assert len(issues) == 1 and LABEL in issues[0]["labels"]
        assert verdict["episode"] in issues[0]["description"]
        assert gitlab.state.issue_notes[pid] == []
        # the report token of the CI variable, never another one
        assert {r.headers.get("private-token") for r in gitlab.requests} == {TOKEN}

        second = _scheduled_pipeline(project, sandbox, wheel, drifted, gitlab)
        assert second.status == {"monitoring-report": "success"}, second.output[-8000:]
        assert len(gitlab.state.issues[pid]) == 1
        (note,) = gitlab.state.issue_notes[pid]
        assert note["issue_iid"] == issues[0]["iid"]

    calm = _served(tmp_path / "calm", drifted=False)
    with FakeGitLab(token=TOKEN) as gitlab:
        gitlab.add_project("ml/news")
        pid = gitlab.project("ml/news")["id"]
        run = _scheduled_pipeline(project, sandbox, wheel, calm, gitlab)
        assert run.status == {"monitoring-report": "success"}, run.output[-8000:]
        assert _verdict(project)["verdict"] == "ok"
        assert gitlab.state.issues[pid] == [] and gitlab.calls("POST") == []
