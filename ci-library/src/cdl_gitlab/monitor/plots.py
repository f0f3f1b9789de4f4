"""PNG figures of a monitoring report (matplotlib, Agg backend): reference vs live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_COLOR = "#4C72B0"
LIVE_COLOR = "#DD8452"
REJECTED_COLOR = "#C44E52"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, bottom: float = 0.14) -> str:
    fig.subplots_adjust(left=0.1, right=0.97, top=0.85, bottom=bottom)
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path.name


def histogram(
    path: Path,
    title: str,
    xlabel: str,
    reference: Sequence[float],
    live: Sequence[float],
    note: str = "",
) -> str:
    """Overlaid density histograms of the reference sample and the live sample."""
    plt = _pyplot()
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    both = np.concatenate([ref, cur])
    low, high = (float(np.min(both)), float(np.max(both))) if both.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    bins = np.linspace(low, high, 31)
    fig, ax = plt.subplots(figsize=(7, 4))
    for values, color, label in (
        (ref, REFERENCE_COLOR, f"reference (n={ref.size})"),
        (cur, LIVE_COLOR, f"live (sample n={cur.size})"),
    ):
        if values.size:
            density, _ = np.histogram(values, bins=bins, density=True)
            ax.stairs(density, bins, fill=True, alpha=0.55, color=color, label=label)
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)


def bars(
    path: Path,
    title: str,
    names: Sequence[str],
    reference: Sequence[float],
    live: Sequence[float],
    note: str = "",
) -> str:
    """Side-by-side bars of two categorical distributions (as shares)."""
    plt = _pyplot()
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    ref = ref / ref.sum() if ref.sum() else ref
    cur = cur / cur.sum() if cur.sum() else cur
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) + 2), 4))
    ax.bar(x - 0.2, ref, width=0.4, color=REFERENCE_COLOR, label="reference")
    ax.bar(x + 0.2, cur, width=0.4, color=LIVE_COLOR, label="live")
    ax.set_xticks(
        x,
        list(names),
        rotation=45 if len(names) > 6 else 0,
        ha="right" if len(names) > 6 else "center",
    )
    ax.set_ylabel("share")
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=10)
    ax.legend()
    return _save(fig, path, bottom=0.3 if len(names) > 6 else 0.14)


def volume(path: Path, hourly: Mapping[tuple[int, str], int], per_day: bool) -> str:
    """Scored items and rejected requests per hour (or per day) over the window."""
    plt = _pyplot()
    step = 86_400 if per_day else 3_600
    buckets: dict[int, dict[str, int]] = {}
    for (hour, status), count in hourly.items():
        slot = buckets.setdefault(hour - hour % step, {})
        slot[status] = slot.get(status, 0) + count
    slots = sorted(buckets)
    times = [datetime.fromtimestamp(s, UTC) for s in slots]
    ok = [buckets[s].get("ok", 0) for s in slots]
    rejected = [buckets[s].get("rejected", 0) for s in slots]
    width = (step / 86_400) * 0.8
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(times, ok, width=width, color=LIVE_COLOR, label="scored items")
    ax.bar(times, rejected, width=width, bottom=ok, color=REJECTED_COLOR, label="rejected")
    ax.set_title(f"Request volume per {'day' if per_day else 'hour'} (UTC)", fontsize=10)
    ax.set_ylabel("count")
    ax.legend()
    fig.autofmt_xdate()
    return _save(fig, path, bottom=0.25)
