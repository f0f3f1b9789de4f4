"""``cdl monitor report``: Scoring Data of the served version against its reference.

The report folder holds ``report.md`` (what was checked, the figures, where to re-enter),
the PNG figures, and ``verdict.json``::

    {"verdict": "ok" | "warn" | "drift" | "insufficient-data", "reasons": [...],
     "figures": {"predictions": "predictions.png", ...}, "skipped": [...], "episode": ...}

The folder is written beside its target and renamed into place, so a reader never sees a
half-written report.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.fsutil import atomic_write_json, atomic_write_text
from cdl_gitlab.monitor import plots
from cdl_gitlab.monitor.checks import (
    DRIFT,
    TITLES,
    Check,
    Policy,
    episode_key,
    evaluate,
    re_entry,
    reasons,
    verdict_of,
)
from cdl_gitlab.monitor.errors import MonitorError
from cdl_gitlab.monitor.feedback import Accuracy, live_accuracy
from cdl_gitlab.monitor.live import LiveData, as_utc, read_live
from cdl_gitlab.monitor.reference import find_reference
from cdl_gitlab.monitor.stats import percentiles

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

VERDICT_FILE = "verdict.json"
REPORT_FILE = "report.md"
DEFAULT_OUT = "monitoring-report"
_DURATION = re.compile(r"^([1-9][0-9]*)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise MonitorError(f"{text!r} is not a duration (use e.g. 30m, 12h, 7d or 2w)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MonitorError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00Z)") from None
    return as_utc(value)


def window(
    since: str | None, last: str | None, default_last: str, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """``(since, until)``: ``--since`` ISO time, else ``--last`` duration, else the default."""
    until = as_utc(now or datetime.now(UTC))
    if since and last:
        raise MonitorError("give either --since or --last, not both")
    start = parse_time(since) if since else until - parse_duration(last or default_last)
    if start >= until:
        raise MonitorError(f"--since {start.isoformat()} is not in the past")
    return start, until


@dataclass
class Served:
    """The model version a report is about, and its registry metadata (if read)."""

    model: str
    version: int
    metadata: dict[str, Any] | None
    production: bool


def served_version(settings: Settings, model: str, version: int | None) -> Served:
    """``version`` of ``model``, else the production version, else the latest."""
    from cdl_gitlab.registry import in_production, open_registry, production_version

    registry = open_registry(settings)
    found = (
        registry.get_version(model, version)
        if version is not None
        else (production_version(registry, model) or registry.get_version(model, None))
    )
    return Served(model, found.version, dict(found.metadata), in_production(found))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _figures(
    folder: Path,
    live: LiveData,
    reference: dict[str, Any] | None,
    checks: list[Check],
    span_hours: float,
) -> dict[str, str]:
    figures: dict[str, str] = {}
    if live.hourly:
        figures["volume"] = plots.volume(folder / "volume.png", live.hourly, span_hours > 72)
    for check in checks:
        note = f"{check.status}: " + (
            f"PSI {check.comparison.psi:.3f}, p={check.comparison.p_value:.3g}"
            if check.comparison
            else check.message
        )
        path = folder / f"{check.name}.png"
        if reference is not None and check.name in live.features:
            check.figure = plots.histogram(
                path,
                f"{TITLES[check.name]}: reference vs live",
                TITLES[check.name],
                reference["features"][check.name]["sample"],
                live.features[check.name].sample.values,
                note,
            )
        elif reference is not None and check.name == "confidence":
            check.figure = plots.histogram(
                path,
                "confidence (max class probability): reference vs live",
                "max probability",
                reference["confidence"]["sample"],
                live.confidence.sample.values,
                note,
            )
        elif reference is not None and check.name == "predictions":
            names = list(reference["classes"])
            check.figure = plots.bars(
                path,
                "predicted-class distribution: reference vs live",
                names,
                [reference["predictions"]["counts"].get(n, 0) for n in names],
                [live.predicted.get(n, 0) for n in names],
                note,
            )
        elif reference is not None and check.name == "stem_profile":
            stems = reference["stem_profile"]["stems"][:20]
            check.figure = plots.bars(
                path,
                "top stems: share among the top-5 stems of each document",
                stems,
                reference["stem_profile"]["counts"][:20],
                [live.stems.get(s, 0) for s in stems],
                note,
            )
        if check.figure:
            figures[check.name] = check.figure
    return figures


def _daily(live: LiveData) -> list[tuple[str, int, int]]:
    days: dict[str, list[int]] = {}
    for (hour, status), count in sorted(live.hourly.items()):
        day = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d")
        slot = days.setdefault(day, [0, 0])
        slot[0 if status == "ok" else 1] += count
    return [(day, ok, rejected) for day, (ok, rejected) in sorted(days.items())]


def render_markdown(verdict: dict[str, Any], checks: list[Check], live: LiveData) -> str:
    """The human-readable report."""
    summary = verdict["summary"]
    lines = [
        f"# Monitoring report: {verdict['model']} v{verdict['version']}",
        "",
        f"**Verdict: {verdict['verdict']}**  ",
        f"Window: {verdict['window']['since']} .. {verdict['window']['until']} (UTC)  ",
        f"Reference: {verdict['reference']}  ",
        f"Generated: {verdict['generated']}",
        "",
    ]
    if verdict["verdict"] == "insufficient-data":
        if summary["scored_items"] < verdict["policy"]["min_samples"]:
            lines += [
                f"> Too little data to judge drift: {summary['scored_items']} scored "
                f"items in the window, {verdict['policy']['min_samples']} needed "
                "(`monitoring.min_samples`). Widen the window (`--last`, `--since`) or "
                "wait for more traffic.",
                "",
            ]
        else:
            lines += [f"> Drift cannot be judged: {verdict['reference']}", ""]
    if verdict["reasons"]:
        lines += ["## Reasons", ""]
        lines += [f"- **{r['status']}** ({r['kind']}): {r['message']}" for r in verdict["reasons"]]
        lines.append("")
    if verdict.get("re_entry"):
        entry = verdict["re_entry"]
        lines += [
            "## Where to re-enter the workflow",
            "",
            f"**{entry['pipeline']} pipeline**: {entry['why']}",
            "",
        ]
    latency = summary["latency_ms"]
    lines += [
        "## Traffic",
        "",
        "| scored items | rejected | error rate | latency p50 / p95 / p99 (ms) | first | last |",
        "|---|---|---|---|---|---|",
        f"| {summary['scored_items']} | {summary['rejected']} | {summary['error_rate']:.2%} | "
        f"{_fmt(latency.get('p50'))} / {_fmt(latency.get('p95'))} / {_fmt(latency.get('p99'))}"
        f" | {summary['first'] or '-'} | {summary['last'] or '-'} |",
        "",
    ]
    daily = _daily(live)
    if daily:
        lines += ["| day (UTC) | scored items | rejected |", "|---|---|---|"]
        lines += [f"| {day} | {ok} | {rejected} |" for day, ok, rejected in daily]
        lines.append("")
    if "volume" in verdict["figures"]:
        lines += [f"![request volume]({verdict['figures']['volume']})", ""]
    lines += [
        "## Checks",
        "",
        "| check | kind | test | statistic | p-value | PSI | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in checks:
        c = check.comparison
        lines.append(
            f"| {check.title} | {check.kind} | {c.test if c else '-'} | "
            f"{_fmt(c.statistic) if c else '-'} | {_fmt(c.p_value) if c else '-'} | "
            f"{_fmt(c.psi) if c else '-'} | {check.status} |"
        )
    lines.append("")
    thresholds = verdict["policy"]
    lines += [
        f"A shift counts when its test has p < {thresholds['p_value']} and its PSI reaches "
        f"{thresholds['psi_warn']} (warn) or {thresholds['psi_drift']} (drift).",
        "",
    ]
    accuracy = verdict["accuracy"]
    lines += ["## Live accuracy", ""]
    if accuracy["labels"]:
        lines += [
            f"{accuracy['correct']} of {accuracy['labels']} labelled predictions correct: "
            f"**{accuracy['accuracy']:.2%}** (gate {thresholds['accuracy_floor']:.2%}).",
            "",
            "| class (truth) | labels | correct |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['labels']} | {v['correct']} |"
            for name, v in sorted(accuracy["per_class"].items())
        ]
    else:
        lines.append("No feedback labels joined to predictions in this window.")
    lines.append("")
    if verdict["skipped"]:
        lines += ["## Skipped checks", ""]
        lines += [f"- {s['check']}: {s['why']}" for s in verdict["skipped"]]
        lines.append("")
    figures = [c for c in checks if c.figure]
    if figures:
        lines += ["## Figures", ""]
        for check in figures:
            lines += [
                f"### {check.title} ({check.status})",
                "",
                check.message,
                "",
                f"![{check.title}]({check.figure})",
                "",
            ]
    return "\n".join(lines)


def build_verdict(
    *,
    served: Served,
    since: datetime,
    until: datetime,
    live: LiveData,
    reference: dict[str, Any] | None,
    checks: list[Check],
    skipped: list[dict[str, str]],
    accuracy: Accuracy,
    policy: Policy,
    reference_note: str,
    figures: dict[str, str],
) -> dict[str, Any]:
    judged = reference is not None and live.ok >= policy.min_samples
    verdict = verdict_of(checks, judged)
    found = reasons(checks)
    return {
        "verdict": verdict,
        "model": served.model,
        "version": served.version,
        "production": served.production,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "window": {
            "since": since.isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
        },
        "reference": reference_note,
        "reasons": [check.as_dict() for check in found],
        "checks": [check.as_dict() for check in checks],
        "skipped": skipped,
        "figures": figures,
        "re_entry": re_entry(checks) if verdict == DRIFT else None,
        "episode": episode_key(served.model, str(served.version), verdict, found),
        "summary": {
            "scored_items": live.ok,
            "rejected": live.rejected,
            "error_rate": round(live.error_rate, 6),
            "latency_ms": percentiles(live.latency.sample.values),
            "first": live.first.isoformat() if live.first else None,
            "last": live.last.isoformat() if live.last else None,
        },
        "accuracy": accuracy.as_dict(),
        "policy": {
            "min_samples": policy.min_samples,
            "psi_warn": policy.thresholds.psi_warn,
            "psi_drift": policy.thresholds.psi_drift,
            "p_value": policy.thresholds.p_value,
            "max_error_rate": policy.max_error_rate,
            "accuracy_floor": policy.accuracy_floor,
            "min_labels": policy.min_labels,
        },
    }


def _replace_folder(staging: Path, target: Path) -> None:
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.old.{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(target, aside)
    os.rename(staging, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def generate(
    *,
    engine: Any,
    served: Served,
    task: str,
    reference: dict[str, Any] | None,
    reference_note: str,
    since: datetime,
    until: datetime,
    policy: Policy,
    out: Path,
) -> dict[str, Any]:
    """Read the window's Scoring Data, run the checks, write the report folder ``out``."""
    if policy.thresholds.psi_warn > policy.thresholds.psi_drift:
        raise MonitorError("monitoring.psi_warn must not exceed monitoring.psi_drift")
    if reference is not None and reference.get("task") != task:
        raise MonitorError(
            f"the reference is for {reference.get('task')} inputs, the model serves {task} inputs"
        )
    live = LiveData(
        task=task,
        feature_edges={k: v["edges"] for k, v in (reference or {}).get("features", {}).items()},
        confidence_edges=(reference or {}).get("confidence", {}).get("edges"),
    )
    read_live(
        engine, live, model=served.model, version=str(served.version), since=since, until=until
    )
    accuracy = live_accuracy(
        engine, model=served.model, version=str(served.version), since=since, until=until
    )
    checks, skipped = evaluate(live, reference, reference_note, accuracy, policy)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        span = (until - since).total_seconds() / 3600
        figures = _figures(staging, live, reference, checks, span)
        verdict = build_verdict(
            served=served,
            since=since,
            until=until,
            live=live,
            reference=reference,
            checks=checks,
            skipped=skipped,
            accuracy=accuracy,
            policy=policy,
            reference_note=reference_note,
            figures=figures,
        )
        atomic_write_text(staging / REPORT_FILE, render_markdown(verdict, checks, live))
        atomic_write_json(staging / VERDICT_FILE, verdict)
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "monitoring report of %s v%s: %s (%s)",
        served.model,
        served.version,
        verdict["verdict"],
        out,
    )
    return verdict


def run_report(
    settings: Settings,
    *,
    model: str | None = None,
    version: int | None = None,
    since: str | None = None,
    last: str | None = None,
    out: Path | None = None,
    reference_path: Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """``cdl monitor report``: resolve the served version and its reference, then generate."""
    from cdl_gitlab.scoring import open_scoring_store

    section = settings.config.monitoring
    start, until = window(since, last, section.report_window)
    name = model or settings.config.model.name
    if version is not None and reference_path is not None:
        served = Served(name, version, None, False)
    else:
        served = served_version(settings, name, version)
    reference, note = find_reference(
        settings, name, served.version, served.metadata, reference_path
    )
    target = Path(out) if out else settings.path(DEFAULT_OUT)
    store = open_scoring_store(settings)
    try:
        verdict = generate(
            engine=store.engine,
            served=served,
            task=settings.config.model.task,
            reference=reference,
            reference_note=note,
            since=start,
            until=until,
            policy=Policy.from_settings(settings),
            out=target,
        )
    finally:
        store.dispose()
    return verdict, target
