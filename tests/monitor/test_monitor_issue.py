"""`cdl monitor open-issue` against the GitLab HTTP fake, with the real python-gitlab."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdl_gitlab.cli import cli
from cdl_gitlab.config import Settings
from cdl_gitlab.monitor import MonitorError
from cdl_gitlab.monitor.issue import LABEL, MARKER, open_issue
from cdl_gitlab.registry import Checkpoint, open_registry
from fakes.gitlab_api import FakeGitLab, RecordedRequest

TOKEN = "glpat-monitor-test"


def _verdict(
    verdict: str = "drift", kinds: tuple[str, ...] = ("input",), pipeline: str = "data"
) -> dict[str, Any]:
    reasons = [
        {"check": f"{kind}_check", "kind": kind, "status": verdict, "message": f"{kind} shifted"}
        for kind in kinds
    ]
    return {
        "verdict": verdict,
        "model": "news",
        "version": 1,
        "generated": "2026-11-23T08:00:00",
        "window": {"since": "2026-11-16T08:00:00", "until": "2026-11-23T08:00:00"},
        "reasons": reasons,
        "skipped": [],
        "figures": {},
        "re_entry": {"pipeline": pipeline, "why": "because"} if verdict == "drift" else None,
        "episode": f"news:v1:{verdict}:{','.join(sorted(kinds))}",
        "summary": {"scored_items": 500},
    }


def _report(folder: Path, verdict: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verdict.json").write_text(json.dumps(verdict))
    (folder / "report.md").write_text("# Monitoring report: news v1\n\nfigures ...\n")
    return folder


@pytest.fixture
def gitlab(
    text_project: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeGitLab]:
    with FakeGitLab(token=TOKEN) as fake:
        fake.add_project("ml/news")
        notes: list[dict[str, Any]] = []

        def post_note(request: RecordedRequest, project: str, iid: str) -> Any:
            note = {
                "id": len(notes) + 1,
                "body": (request.json or {}).get("body"),
                "issue_iid": int(iid),
            }
            notes.append(note)
            return 201, note

        fake.route("POST", "/api/v4/projects/{project}/issues/{iid}/notes", post_note)
        fake.notes = notes  # type: ignore[attr-defined]
        monkeypatch.setenv("CI_SERVER_URL", fake.url)
        monkeypatch.setenv("CI_PROJECT_ID", "ml/news")
        monkeypatch.setenv("CDL_GITLAB_TOKEN", TOKEN)
        folder = tmp_path / "ckpt"
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"w")
        open_registry(text_project).register_version("news", Checkpoint("ckpt-77", folder), {})
        yield fake


def _issues(fake: FakeGitLab) -> list[dict[str, Any]]:
    project = fake.project("ml/news")
    assert project is not None
    return fake.state.issues[project["id"]]


def test_one_issue_per_episode(gitlab: FakeGitLab, text_project: Settings, tmp_path: Path) -> None:
    report = _report(tmp_path / "r1", _verdict())
    first = open_issue(text_project, report)
    assert first["action"] == "created" and first["iid"] == 1
    issue = _issues(gitlab)[0]
    assert LABEL in issue["labels"] and "re-enter::data" in issue["labels"]
    assert f"<!-- {MARKER}: news:v1:drift:input -->" in issue["description"]
    assert "data pipeline" in issue["description"] and "input shifted" in issue["description"]
    assert "news v1" in issue["description"] and "ckpt-77" in issue["description"]  # lineage
    assert "re-enter the data pipeline" in issue["title"]

    again = open_issue(text_project, _report(tmp_path / "r2", _verdict()))
    assert again["action"] == "updated" and again["iid"] == 1
    assert len(_issues(gitlab)) == 1
    assert len(gitlab.notes) == 1 and "episode continues" in gitlab.notes[0]["body"]

    other = open_issue(
        text_project, _report(tmp_path / "r3", _verdict(kinds=("accuracy",), pipeline="model"))
    )
    assert other["action"] == "created" and other["iid"] == 2
    assert "re-enter::model" in _issues(gitlab)[1]["labels"]

    closed = copy.deepcopy(_verdict())
    _issues(gitlab)[0]["state"] = "closed"  # a closed episode does not absorb a new one
    assert open_issue(text_project, _report(tmp_path / "r4", closed))["action"] == "created"
    assert len(_issues(gitlab)) == 3


def test_no_issue_without_drift(gitlab: FakeGitLab, text_project: Settings, tmp_path: Path) -> None:
    for verdict in ("ok", "warn", "insufficient-data"):
        result = open_issue(text_project, _report(tmp_path / verdict, _verdict(verdict)))
        assert result["action"] == "none"
    assert _issues(gitlab) == [] and gitlab.calls("POST") == []


def test_cli_and_errors(
    gitlab: FakeGitLab, text_project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = _report(tmp_path / "report", _verdict())
    runner = CliRunner(mix_stderr=False)
    args = [
        "--config",
        str(text_project.root / "cdl.yaml"),
        "monitor",
        "open-issue",
        "--report",
        str(report),
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "created issue #1 for episode news:v1:drift:input" in result.output
    result = runner.invoke(cli, args)
    assert "updated issue #1" in result.output

    gitlab.fail("GET", "/api/v4/projects/{project}/issues", 403)
    with pytest.raises(MonitorError, match="403"):
        open_issue(text_project, report)
    monkeypatch.delenv("CDL_GITLAB_TOKEN")
    with pytest.raises(Exception, match="CDL_GITLAB_TOKEN"):
        open_issue(text_project, report)
    with pytest.raises(MonitorError, match="cdl monitor report"):
        open_issue(text_project, tmp_path / "missing")
