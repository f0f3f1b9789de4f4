"""The model-report-note job's script posts (then updates) the evaluation report as a
merge-request note through python-gitlab, against a real HTTP fake of the GitLab API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cdl_ci_harness as h
import pytest

sys.path.insert(0, str(h.REPO_ROOT / "tests"))
from fakes.gitlab_api import FakeGitLab

pytest.importorskip("gitlab")

TOKEN = "glpat-report-token"


def _note_script() -> str:
    component = h.load_component("model-pipeline")
    job = h.interpolate(component, h.branch_inputs(component))["model-report-note"]
    scripts = [line for line in job["script"] if "python3 - <<'PY'" in line]
    assert len(scripts) == 1
    body = scripts[0].split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0]
    return body


def _with_notes(fake: FakeGitLab) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    base = "/api/v4/projects/{project}/merge_requests/{iid}/notes"

    def list_notes(request, project, iid):
        return 200, notes

    def create(request, project, iid):
        note = {
            "id": 900 + len(notes),
            "body": request.json["body"],
            "project": project,
            "iid": iid,
        }
        notes.append(note)
        return 201, note

    def update(request, project, iid, note_id):
        for note in notes:
            if str(note["id"]) == note_id:
                note["body"] = request.json["body"]
                return 200, note
        return 404, {"message": "404 Not found"}

    fake.route("GET", base, list_notes)
    fake.route("POST", base, create)
    fake.route("PUT", base + "/{note_id}", update)
    return notes


def _run(
    script: str, fake: FakeGitLab, tmp_path: Path, token: str | None
) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "reports" / "model" / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        "## Model news v3\n\ntest accuracy 0.97 (gate 0.95): passed\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CI_")}
    env.update(
        CI_SERVER_URL=fake.url,
        CI_PROJECT_ID="42",
        CI_MERGE_REQUEST_IID="7",
        CI_PIPELINE_URL="https://gitlab.example.com/ml/news/-/pipelines/1",
        CDL_REPORT_FILE="reports/model/report.md",
        CDL_REPORT_TOKEN_VARIABLE="CDL_GITLAB_TOKEN",
    )
    env.pop("CDL_GITLAB_TOKEN", None)
    if token is not None:
        env["CDL_GITLAB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-"],
        input=script,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_posts_then_updates_one_note(tmp_path: Path) -> None:
    script = _note_script()
    with FakeGitLab(token=TOKEN) as fake:
        notes = _with_notes(fake)
        first = _run(script, fake, tmp_path, TOKEN)
        assert first.returncode == 0, first.stderr
        assert "posted merge-request note 900" in first.stdout
        assert len(notes) == 1
        assert notes[0]["body"].startswith("<!-- cdl-model-report -->")
        assert "test accuracy 0.97" in notes[0]["body"]
        assert notes[0]["project"] == "42" and notes[0]["iid"] == "7"

        second = _run(script, fake, tmp_path, TOKEN)
        assert second.returncode == 0, second.stderr
        assert "updated merge-request note 900" in second.stdout
        assert len(notes) == 1  # one note per merge request, kept current


def test_missing_token_says_which_variable_to_set(tmp_path: Path) -> None:
    with FakeGitLab(token=TOKEN) as fake:
        _with_notes(fake)
        result = _run(_note_script(), fake, tmp_path, None)
    assert result.returncode != 0
    assert "set the masked CI/CD variable CDL_GITLAB_TOKEN" in result.stderr
