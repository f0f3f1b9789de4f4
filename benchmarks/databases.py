"""Cost of opening CDL's databases: first use (all revisions applied) and every later open
(one version-table read), per schema, on SQLite and, if given, PostgreSQL.

Usage: python benchmarks/databases.py [--opens 50] [--postgres postgresql://user@host/db]

``--postgres`` must name an empty database the benchmark may fill (labels and scoring only:
the registry and the tracker are SQLite stores). Prints milliseconds per open.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cdl_gitlab.data.labels import LabelStore
from cdl_gitlab.registry import LocalRegistry
from cdl_gitlab.scoring import ScoringStore
from cdl_gitlab.tracking import ExperimentRegistry


def _ms(open_store: Callable[[], object], count: int) -> tuple[float, float]:
    started = time.perf_counter()
    open_store()
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(count):
        open_store()
    return first * 1000, (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=50)
    parser.add_argument("--postgres", default=None, help="URL of an empty PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases: list[tuple[str, Callable[[], object]]] = [
            ("registry (SQLite)", lambda: LocalRegistry(root / "registry")),
            ("tracking (SQLite)", lambda: ExperimentRegistry(root / "experiments.sqlite")),
            ("labels (SQLite)", lambda: LabelStore(f"sqlite:///{root}/labels.sqlite", "b_labels")),
            ("scoring (SQLite)", lambda: ScoringStore(f"sqlite:///{root}/scoring.sqlite")),
        ]
        if args.postgres:
            url = args.postgres
            cases += [
                ("labels (PostgreSQL)", lambda: LabelStore(url, "b_labels").close()),
                ("scoring (PostgreSQL)", lambda: ScoringStore(url).dispose()),
            ]
        print(f"{'schema':<22} {'first use ms':>12} {'later open ms':>14}")
        for name, open_store in cases:
            first, later = _ms(open_store, args.opens)
            print(f"{name:<22} {first:>12.1f} {later:>14.2f}")


if __name__ == "__main__":
    main()
