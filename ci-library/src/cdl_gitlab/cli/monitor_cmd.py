"""``cdl monitor report|open-issue|feedback|reference``: monitoring and maintenance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.monitor import DRIFT_EXIT_CODE


def _version(text: str | None) -> int | None:
    if text is None or text == "latest":
        return None
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise click.BadParameter(f"{text!r} is not a version (use 3 or v3)")
    return int(digits)


@click.group("monitor")
def monitor() -> None:
    """Monitor the served model from its Scoring Data and decide when to re-enter."""


@monitor.command("report")
@click.option("--since", help="Start of the window: an ISO time (UTC if no zone).")
@click.option("--last", help="Window up to now, e.g. 12h, 7d (default monitoring.report_window).")
@click.option("--model", help="Model name (default: model.name of cdl.yaml).")
@click.option(
    "--version", "version_text", help="Version (default: the production version, else the latest)."
)
@click.option(
    "--reference",
    "reference_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference statistics file (default: registry metadata, else the artifact).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder (default: monitoring-report/ in the project).",
)
@click.option("--json", "as_json", is_flag=True, help="Print verdict.json instead of a summary.")
@pass_app
def report_cmd(
    app: AppContext,
    since: str | None,
    last: str | None,
    model: str | None,
    version_text: str | None,
    reference_path: Path | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Drift report of the served version: exit 0 (ok, warn, insufficient-data) or 3 (drift)."""
    from cdl_gitlab.monitor.drift_report import run_report

    verdict, folder = run_report(
        app.settings,
        model=model,
        version=_version(version_text),
        since=since,
        last=last,
        out=out,
        reference_path=reference_path,
    )
    if as_json:
        click.echo(json.dumps(verdict, indent=2, sort_keys=True))
    else:
        click.echo(
            f"{verdict['model']} v{verdict['version']}: {verdict['verdict']} "
            f"({verdict['summary']['scored_items']} scored items; report in {folder})"
        )
        for reason in verdict["reasons"]:
            click.echo(f"  {reason['status']}: {reason['message']}")
        for skipped in verdict["skipped"]:
            click.echo(f"  skipped {skipped['check']}: {skipped['why']}")
        if verdict.get("re_entry"):
            entry = verdict["re_entry"]
            click.echo(f"  re-enter the {entry['pipeline']} pipeline: {entry['why']}")
    if verdict["verdict"] == "drift":
        sys.exit(DRIFT_EXIT_CODE)


@monitor.command("open-issue")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder of `cdl monitor report` (default: monitoring-report/).",
)
@pass_app
def open_issue_cmd(app: AppContext, report_dir: Path | None) -> None:
    """File a GitLab issue for a drift report (a note on the open issue of the same episode)."""
    from cdl_gitlab.monitor.drift_report import DEFAULT_OUT
    from cdl_gitlab.monitor.issue import open_issue

    folder = report_dir or app.settings.path(DEFAULT_OUT)
    result = open_issue(app.settings, folder)
    if result["action"] == "none":
        click.echo(f"verdict {result['verdict']}: no maintenance issue needed")
    else:
        click.echo(
            f"{result['action']} issue #{result['iid']} for episode {result['episode']}"
            + (f": {result['web_url']}" if result.get("web_url") else "")
        )


@monitor.command("feedback")
@click.argument("request_id")
@click.argument("truth")
@click.option(
    "--item",
    "item_index",
    type=int,
    default=0,
    show_default=True,
    help="Index of the item within the request.",
)
@pass_app
def feedback_cmd(app: AppContext, request_id: str, truth: str, item_index: int) -> None:
    """Record TRUTH (a class name) as the true class of a logged prediction."""
    from cdl_gitlab.monitor.errors import FeedbackError
    from cdl_gitlab.monitor.feedback import record_feedback
    from cdl_gitlab.scoring import open_scoring_store

    classes = app.settings.config.model.classes
    if classes and truth not in classes:
        raise FeedbackError(f"unknown class {truth!r} (classes: {classes})")
    store = open_scoring_store(app.settings)
    try:
        record_feedback(store, request_id, item_index, truth)
    finally:
        store.dispose()
    click.echo(f"recorded {truth!r} for item {item_index} of request {request_id}")


@monitor.command("show-reference")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def show_reference_cmd(path: Path) -> None:
    """Summarise a reference statistics file (reference.json of an artifact)."""
    from cdl_gitlab.monitor.reference import load_reference

    reference = load_reference(path)
    click.echo(
        f"{reference['task']} reference of {reference['n_items']} items, "
        f"classes {', '.join(reference['classes'])}; accuracy "
        f"{reference.get('accuracy')}"
    )
    for name, summary in reference["features"].items():
        click.echo(f"  {name}: mean {summary['mean']:.4g}, quantiles {summary['quantiles']}")
    click.echo(f"  predictions: {reference['predictions']['counts']}")
