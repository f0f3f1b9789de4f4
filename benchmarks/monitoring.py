"""Time of ``cdl monitor report`` over 10k and 1M scoring rows (issue 9).

Usage: python benchmarks/monitoring.py [--rows 10000,100000,1000000] [--tmp DIR]

For each size, a temporary SQLite scoring store is filled with bulk inserts (not timed): text
records as the serving wrapper writes them (``input_stats`` from
:func:`cdl_gitlab.features.input_stats.text_stats`, probabilities, latency), spread over 7 days,
half of them from shifted traffic. Then :func:`cdl_gitlab.monitor.drift_report.generate` is timed
end to end:
the streamed read (needed columns only, ``yield_per`` chunks), the drift tests, the feedback
join and the figures. Prints seconds and rows/s per size and the marginal cost per row
between sizes (goal: linear, i.e. equal marginal costs, and 1M rows under 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from cdl_gitlab.features.input_stats import text_stats, vocabulary_set
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer
from cdl_gitlab.monitor.checks import Policy
from cdl_gitlab.monitor.drift_report import Served, generate
from cdl_gitlab.monitor.reference import compute_reference
from cdl_gitlab.scoring import ScoringStore
from cdl_gitlab.scoring.tables import scoring_records

CLASSES = ["business", "entertainment", "politics", "sport", "tech"]
WORDS = [
    "the",
    "market",
    "rose",
    "as",
    "shares",
    "in",
    "company",
    "gained",
    "after",
    "profits",
    "beat",
    "forecasts",
    "while",
    "team",
    "won",
    "match",
    "with",
    "a",
    "late",
    "goal",
    "and",
    "minister",
    "said",
    "economy",
    "grew",
    "film",
    "star",
    "award",
    "vote",
    "election",
    "phone",
    "software",
    "network",
]
FOREIGN = ["zorblat", "quimby", "frandle", "gostrel", "plinth", "wexmoor", "yarrowbe", "kelptan"]
POOL = 2_000
INSERT_BATCH = 50_000


def _document(rng: random.Random, shifted: bool) -> str:
    length = rng.randint(20, 80) if shifted else rng.randint(80, 400)
    pool = WORDS + FOREIGN * 4 if shifted else WORDS
    return " ".join(rng.choice(pool) for _ in range(length))


def _probabilities(rng: random.Random) -> dict[str, float]:
    raw = [rng.random() ** 3 for _ in CLASSES]
    total = sum(raw)
    return {name: value / total for name, value in zip(CLASSES, raw, strict=True)}


def _features() -> FeatureState:
    return FeatureState(TextVectorizer.fit([" ".join(WORDS)]), LabelEncoder(CLASSES))


def _templates(seed: int) -> list[dict[str, Any]]:
    """A pool of distinct row payloads (computing text_stats per row would time the setup)."""
    rng = random.Random(seed)
    vocabulary = vocabulary_set(_features())
    rows = []
    for index in range(POOL):
        text = _document(rng, shifted=index % 2 == 1)
        probabilities = _probabilities(rng)
        rows.append(
            {
                "input_kind": "text",
                "input_text": text[:200],
                "input_stats": text_stats(text, vocabulary),
                "probabilities": probabilities,
                "predicted": max(probabilities, key=probabilities.__getitem__),
            }
        )
    return rows


def fill(url: str, rows: int, now: datetime, seed: int = 0) -> None:
    """Bulk-insert ``rows`` scoring records of model ``news`` v1 over the last 7 days."""
    store = ScoringStore(url)
    templates = _templates(seed)
    rng = random.Random(seed)
    span = timedelta(days=7).total_seconds()
    written = 0
    with store.engine.begin() as conn:
        while written < rows:
            batch = []
            for index in range(written, min(rows, written + INSERT_BATCH)):
                template = templates[index % POOL]
                batch.append(
                    {
                        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                        "item_index": 0,
                        "ts": now - timedelta(seconds=span * (1 - index / rows)),
                        "model": "news",
                        "version": "1",
                        "status": "ok",
                        "error": None,
                        "input_hash": None,
                        "latency_ms": rng.uniform(3, 40),
                        **template,
                    }
                )
            conn.execute(insert(scoring_records), batch)
            written += len(batch)
    store.dispose()


def reference() -> dict[str, Any]:
    rng = random.Random(99)
    texts = [_document(rng, shifted=False) for _ in range(1000)]
    probabilities = np.array([list(_probabilities(rng).values()) for _ in texts])
    return compute_reference("text", texts, probabilities, _features())


def run(rows: int, tmp: Path) -> float:
    now = datetime.now(UTC)
    url = f"sqlite:///{tmp / f'scoring-{rows}.sqlite'}"
    started = time.perf_counter()
    fill(url, rows, now)
    print(f"{rows:>9,} rows: filled in {time.perf_counter() - started:.1f} s (not timed)")
    store = ScoringStore(url)
    started = time.perf_counter()
    verdict = generate(
        engine=store.engine,
        served=Served("news", 1, None, True),
        task="text",
        reference=reference(),
        reference_note="benchmark",
        since=now - timedelta(days=8),
        until=now + timedelta(seconds=1),
        policy=Policy(),
        out=tmp / f"report-{rows}",
    )
    seconds = time.perf_counter() - started
    store.dispose()
    assert verdict["summary"]["scored_items"] == rows, verdict["summary"]
    print(
        f"{rows:>9,} rows: report in {seconds:.2f} s = {rows / seconds:,.0f} rows/s "
        f"(verdict {verdict['verdict']}, {len(verdict['figures'])} figures)"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="10000,100000,1000000",
        help="comma-separated row counts (default 10000,100000,1000000)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the SQLite files")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="cdl-monitor-bench-") as folder:
        results = {rows: run(rows, Path(folder)) for rows in sizes}
    sizes = sorted(results)
    for small, large in itertools.pairwise(sizes):
        marginal = (results[large] - results[small]) / (large - small) * 1e6
        print(f"marginal cost {small:,} -> {large:,} rows: {marginal:.1f} us/row")
    if len(sizes) > 2:
        print("linear when the marginal costs agree; the rest is fixed (imports, tests, figures)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process (fill included): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
