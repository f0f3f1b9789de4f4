"""Clean+validate throughput (files/s) of the data pipeline's validate step.

Usage: python benchmarks/data_throughput.py [--bbc PATH] [--files N] [--runs R] [--tmp DIR]

Measures ``cdl_gitlab.data.steps.validate.validate_tree`` (read, decode/clean, validate, write
kept items and summary.json) on folders laid out as the pipeline materializes them
(``<class>/<file>``):
the BBC archive (``--bbc``, ``$CDL_BBC_ARCHIVE`` or ../shared/datasets/bbc-fulltext.zip;
skipped with a message if absent) and generated corpora of 2,225 and ``--files`` (default
100,000) files with 2% bad items. Writing the input folders is not timed; the cost is mostly
file-system calls, so ``--tmp /dev/shm`` (tmpfs) separates CPU cost from disk. Goals (issue 3):
2,225 BBC files under 2 s; throughput at 100k within 20% of throughput at 2k.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cdl_gitlab.data.ingest import Limits, stage_source
from cdl_gitlab.data.steps.validate import Rules, validate_tree

RULES = Rules(task="text", min_chars=100, max_bytes=1_000_000, extensions=("txt",))
DEFAULT_BBC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "bbc-fulltext.zip"
WORDS = (
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
)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def generated(count: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` BBC-sized articles in 5 classes; every 50th item is bad in some way."""
    rng = random.Random(seed)
    bad = [b"", b"\x00\x01" * 300, b"too short", b"caf\xe9 " * 60]
    files: dict[str, bytes] = {}
    for index in range(count):
        label = f"class{index % 5}"
        if index % 50 == 49:
            data = bad[(index // 50) % len(bad)]
        else:
            words = rng.randrange(150, 600)
            data = " ".join(rng.choice(WORDS) for _ in range(words)).encode()
        files[f"{label}/{index:06d}.txt"] = data
    return files


def measure(name: str, files: dict[str, bytes], runs: int, tmp: Path | None) -> float:
    with tempfile.TemporaryDirectory(prefix="cdl-bench-", dir=tmp) as scratch:
        src = Path(scratch) / "in"
        write_files(src, files)
        timings, cpu = [], []
        for run in range(runs):
            out = Path(scratch) / f"out{run}"
            start, start_cpu = time.perf_counter(), time.process_time()
            summary = validate_tree(src, out, RULES)
            timings.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            shutil.rmtree(out)
    wall = statistics.median(timings)
    rate = len(files) / wall
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.reasons.items())) or "none"
    print(
        f"{name:<12} {len(files):>7} files  wall {wall:7.3f} s = {rate:6.0f} files/s  "
        f"cpu {statistics.median(cpu):7.3f} s = {len(files) / statistics.median(cpu):6.0f} "
        f"files/s  (kept {summary.kept}; discarded: {reasons})"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bbc", type=Path, default=Path(os.environ.get("CDL_BBC_ARCHIVE") or DEFAULT_BBC)
    )
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tmp", type=Path, help="folder for the corpora (default: system temp)")
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)  # one log line per discarded item is not what is measured
    if args.bbc.is_file():
        with tempfile.TemporaryDirectory(prefix="cdl-bbc-", dir=args.tmp) as staged_dir:
            staged = stage_source(args.bbc, Path(staged_dir), Limits())
            bbc = {rel: (Path(staged_dir) / rel).read_bytes() for rel in staged.files}
        measure("BBC archive", bbc, args.runs, args.tmp)
    else:
        print(f"BBC archive: skipped ({args.bbc} not found; pass --bbc or set CDL_BBC_ARCHIVE)")
    small = measure("generated", generated(2_225), args.runs, args.tmp)
    large = measure("generated", generated(args.files), max(1, args.runs - 2), args.tmp)
    print(
        f"throughput at {args.files} files / at 2,225 files: {large / small:.2f}"
        f" (temp folder: {args.tmp or tempfile.gettempdir()})"
    )


if __name__ == "__main__":
    main()
