"""``cdl monitor open-issue``: turn a drift report into a GitLab maintenance issue.

One issue per *episode* (model, version, verdict and the kinds of its reasons): the episode
key is written into the description as a hidden marker, and an open issue carrying the same
marker gets a note with the new report instead of a duplicate.

GitLab: ``$CI_SERVER_URL`` or ``monitoring.gitlab_url``; project ``$CI_PROJECT_ID`` or
``monitoring.gitlab_project``; token from the variable named by ``cluster.gitlab_token_env``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.monitor.drift_report import REPORT_FILE, VERDICT_FILE
from cdl_gitlab.monitor.errors import MonitorError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

LABEL = "cdl-monitoring"
MARKER = "cdl-monitor-episode"
MAX_REPORT_CHARS = 60_000


@dataclass(frozen=True)
class GitLabTarget:
    url: str
    project: str
    token: str


def gitlab_target(settings: Settings) -> GitLabTarget:
    """Where issues go, from the CI variables or cdl.yaml; the token only from the environment."""
    section = settings.config.monitoring
    url = os.environ.get("CI_SERVER_URL") or section.gitlab_url
    project = os.environ.get("CI_PROJECT_ID") or section.gitlab_project
    if not url:
        raise MonitorError("no GitLab URL: set monitoring.gitlab_url in cdl.yaml or CI_SERVER_URL")
    if not project:
        raise MonitorError(
            "no GitLab project: set monitoring.gitlab_project in cdl.yaml or CI_PROJECT_ID"
        )
    token = settings.secret(settings.config.cluster.gitlab_token_env, "filing a GitLab issue")
    return GitLabTarget(url.rstrip("/"), project, token)


def load_report(folder: Path) -> tuple[dict[str, Any], str]:
    """``(verdict.json, report.md)`` of a report folder."""
    try:
        verdict = json.loads((Path(folder) / VERDICT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MonitorError(
            f"{folder} holds no {VERDICT_FILE}: run `cdl monitor report --out {folder}` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise MonitorError(f"{folder / VERDICT_FILE}: unreadable: {exc}") from exc
    report_path = Path(folder) / REPORT_FILE
    report = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    return verdict, report


def needs_issue(verdict: dict[str, Any]) -> bool:
    """Drift (input, prediction shift, or live accuracy below the gate) needs maintenance."""
    return verdict.get("verdict") == "drift"


def marker(episode: str) -> str:
    return f"<!-- {MARKER}: {episode} -->"


def lineage_text(settings: Settings, model: str, version: int) -> str:
    """``cdl lineage`` of the served version, or why it could not be read."""
    from cdl_gitlab.lineage import format_lineage
    from cdl_gitlab.registry import open_registry

    try:
        return format_lineage(open_registry(settings).get_version(model, version))
    except CDLError as exc:
        return f"(lineage unavailable: {exc})"


def _kinds(verdict: dict[str, Any]) -> str:
    return (
        ", ".join(
            sorted(
                {
                    r["kind"]
                    for r in verdict.get("reasons", [])
                    if r.get("status") == verdict.get("verdict")
                }
            )
        )
        or "-"
    )


def title(verdict: dict[str, Any]) -> str:
    entry = verdict.get("re_entry") or {}
    where = f": re-enter the {entry['pipeline']} pipeline" if entry else ""
    return (
        f"Model monitoring: {verdict['model']} v{verdict['version']} "
        f"{verdict['verdict']} ({_kinds(verdict)}){where}"
    )


def _reasons(verdict: dict[str, Any]) -> list[str]:
    return [f"- **{r['status']}** ({r['kind']}): {r['message']}" for r in verdict["reasons"]]


def issue_body(verdict: dict[str, Any], report: str, lineage: str) -> str:
    """Description of a new maintenance issue: verdict, re-entry, lineage, the report."""
    entry = verdict.get("re_entry") or {}
    job = os.environ.get("CI_JOB_URL")
    report_text = (
        report
        if len(report) <= MAX_REPORT_CHARS
        else (report[:MAX_REPORT_CHARS] + "\n\n(report truncated; see the job artifacts)")
    )
    lines = [
        marker(verdict["episode"]),
        f"Monitoring found **{verdict['verdict']}** for the served model "
        f"**{verdict['model']} v{verdict['version']}** in the window "
        f"{verdict['window']['since']} .. {verdict['window']['until']}.",
        "",
        "## Reasons",
        "",
        *_reasons(verdict),
        "",
        "## Where to re-enter the workflow",
        "",
        f"**{entry['pipeline']} pipeline**: {entry['why']}" if entry else "Investigate.",
        "",
        "## Lineage of the served version",
        "",
        "```",
        lineage,
        "```",
        "",
    ]
    if job:
        lines += [f"Report folder with the figures: artifacts of {job}", ""]
    lines += [
        "<details><summary>Full monitoring report</summary>",
        "",
        report_text,
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def note_body(verdict: dict[str, Any]) -> str:
    """Comment added to the open issue of a continuing episode."""
    job = os.environ.get("CI_JOB_URL")
    lines = [
        f"The episode continues: report of {verdict['generated']} (window "
        f"{verdict['window']['since']} .. {verdict['window']['until']}, "
        f"{verdict['summary']['scored_items']} scored items).",
        "",
        *_reasons(verdict),
    ]
    if job:
        lines += ["", f"Report: artifacts of {job}"]
    return "\n".join(lines)


def file_issue(project: Any, verdict: dict[str, Any], body: str) -> tuple[str, Any]:
    """Create the episode's issue, or add a note to its open issue: ``("created"|"updated",
    issue)``. ``project`` is a python-gitlab project (may be lazy)."""
    tag = marker(verdict["episode"])
    for issue in project.issues.list(state="opened", labels=[LABEL], get_all=True):
        if issue.state == "opened" and LABEL in issue.labels and tag in (issue.description or ""):
            issue.notes.create({"body": note_body(verdict)})
            return "updated", issue
    entry = verdict.get("re_entry") or {}
    labels = [LABEL, f"monitoring::{verdict['verdict']}"]
    if entry:
        labels.append(f"re-enter::{entry['pipeline']}")
    issue = project.issues.create(
        {"title": title(verdict), "description": body, "labels": ",".join(labels)}
    )
    return "created", issue


def open_issue(settings: Settings, report_dir: Path) -> dict[str, Any]:
    """File (or update) the maintenance issue of the report in ``report_dir`` if it needs one."""
    verdict, report = load_report(report_dir)
    if not needs_issue(verdict):
        return {"action": "none", "verdict": verdict.get("verdict"), "episode": None}
    import gitlab
    import requests
    from gitlab.exceptions import GitlabError

    target = gitlab_target(settings)
    body = issue_body(
        verdict, report, lineage_text(settings, verdict["model"], int(verdict["version"]))
    )
    try:
        client = gitlab.Gitlab(target.url, private_token=target.token, timeout=30)
        project = client.projects.get(target.project, lazy=True)
        action, issue = file_issue(project, verdict, body)
    except (GitlabError, requests.RequestException) as exc:
        code = getattr(exc, "response_code", None)
        raise MonitorError(
            f"GitLab {target.url} project {target.project}: {code or ''} {exc}".strip()
        ) from exc
    return {
        "action": action,
        "verdict": verdict["verdict"],
        "episode": verdict["episode"],
        "iid": issue.iid,
        "web_url": getattr(issue, "web_url", None),
    }
