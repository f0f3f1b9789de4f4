"""Data pipeline figures: ingest (collect + split) and clean/validate per file, and peak RSS.

Usage: python benchmarks/data_throughput.py [--bbc PATH] [--files N] [--runs R] [--tmp DIR]

1. Validate throughput (files/s) of ``cdl_gitlab.data.steps.validate.validate_tree`` (read,
   decode, validate, write kept items and summary.json) on the BBC archive (``--bbc``,
   ``$CDL_BBC_ARCHIVE`` or ../shared/datasets/bbc-fulltext.zip; skipped if absent) and on a
   generated corpus of 2,225 files.
2. Scale: for 2,000, 20,000 and ``--files`` (default 100,000) small generated files (2% bad),
   each in a fresh process: collect (safe staging + commit into the local store), split
   (content-hash assignment, both commits) and validate both splits (checkout +
   ``validate_tree``). Prints the time per file of each phase and the process's peak RSS
   (``ru_maxrss``), then the RSS slope (least squares, KB per file: ingestion streams one
   file at a time, so it should be ~0), the RSS difference between the largest and the
   smallest count, and the ratio of the per-file times at the largest count and at 2,000
   (goal: at most 1.2).
Writing the source folders is not timed; ``--tmp /dev/shm`` (tmpfs) separates CPU from disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from cdl_gitlab.config import load_settings
from cdl_gitlab.data.ingest import Limits, stage_source
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.steps.validate import Rules, validate_tree
from cdl_gitlab.data.stores.local_store import LocalStore

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


def write_files(root: Path, files: Iterable[tuple[str, bytes]]) -> None:
    for rel, data in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def iter_generated(count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` BBC-sized articles in 5 classes; every 50th item is bad in some way."""
    rng = random.Random(seed)
    bad = [b"", b"\x00\x01" * 300, b"too short", b"caf\xe9 " * 60]
    for index in range(count):
        label = f"class{index % 5}"
        if index % 50 == 49:
            data = bad[(index // 50) % len(bad)]
        else:
            words = rng.randrange(150, 600)
            data = " ".join(rng.choice(WORDS) for _ in range(words)).encode()
        yield f"{label}/{index:06d}.txt", data


def generated(count: int, seed: int = 0) -> dict[str, bytes]:
    return dict(iter_generated(count, seed))


def measure(name: str, files: dict[str, bytes], runs: int, tmp: Path | None) -> float:
    with tempfile.TemporaryDirectory(prefix="cdl-bench-", dir=tmp) as scratch:
        src = Path(scratch) / "in"
        write_files(src, files.items())
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


CDL_YAML = """\
version: 1
project: {name: Bench, slug: bench}
profile: local
model: {name: bench, framework: pytorch, task: text, classes: []}
data:
  source: "SOURCE"
  repo_prefix: bench
"""


def scale(count: int, tmp: Path | None) -> None:
    """One process: collect, split and validate ``count`` generated files; print figures."""
    import logging

    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="cdl-scale-", dir=tmp) as scratch:
        root = Path(scratch)
        write_files(root / "source", iter_generated(count))
        (root / "project").mkdir()
        config = root / "project" / "cdl.yaml"
        config.write_text(CDL_YAML.replace("SOURCE", str(root / "source")), encoding="utf-8")
        settings = load_settings(config, "local")
        store = LocalStore(settings.state_dir / "data")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        pipeline.collect(settings, store)
        timings["collect"] = time.perf_counter() - start
        start = time.perf_counter()
        pipeline.split(settings, store)
        timings["split"] = time.perf_counter() - start
        start = time.perf_counter()
        kept = 0
        for name in ("train", "test"):
            store.checkout(f"bench-{name}", "master", root / "in" / name)
            kept += validate_tree(root / "in" / name, root / "out" / name, RULES).kept
        timings["validate"] = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(timings.values())
    phases = "  ".join(f"{k} {v / count * 1e6:6.0f} us" for k, v in timings.items())
    print(
        f"scale {count:>7} files: {total / count * 1e6:6.0f} us/file ({phases}); "
        f"kept {kept}; peak RSS {peak_mb:6.1f} MB",
        flush=True,
    )
    figures = {"count": count, "us_per_file": total / count * 1e6, "peak_rss_mb": peak_mb}
    print(FIGURES + json.dumps(figures), flush=True)


FIGURES = "figures: "


def report_scale(runs: list[dict[str, float]]) -> None:
    """The RSS slope over the counts, the RSS and time ratios of the largest and the first."""
    counts = [run["count"] for run in runs]
    rss = [run["peak_rss_mb"] for run in runs]
    mean_n, mean_r = statistics.fmean(counts), statistics.fmean(rss)
    spread = sum((n - mean_n) ** 2 for n in counts)
    slope = sum((n - mean_n) * (r - mean_r) for n, r in zip(counts, rss, strict=True)) / spread
    first, last = runs[0], runs[-1]
    print(
        f"peak RSS: slope {slope * 1024:.3f} KB/file over {', '.join(f'{n:,.0f}' for n in counts)}"
        f" files; {last['count']:,.0f} vs {first['count']:,.0f} files: "
        f"{last['peak_rss_mb'] - first['peak_rss_mb']:+.1f} MB "
        f"({first['peak_rss_mb']:.1f} -> {last['peak_rss_mb']:.1f} MB)"
    )
    ratio = last["us_per_file"] / first["us_per_file"]
    print(
        f"time per file at {last['count']:,.0f} / at {first['count']:,.0f} files: {ratio:.2f} "
        f"({first['us_per_file']:.0f} -> {last['us_per_file']:.0f} us/file; goal <= 1.2)"
    )


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
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a scale run's process
    parser.add_argument("--skip-validate-only", action="store_true", help="only the scale runs")
    args = parser.parse_args()
    if args.one:
        scale(args.one, args.tmp)
        return
    import logging

    logging.disable(logging.INFO)  # one log line per discarded item is not what is measured
    if not args.skip_validate_only:
        validate_only(args)
    runs = []
    for count in sorted({2_000, 20_000, args.files}):
        command = [sys.executable, __file__, "--one", str(count)]
        command += ["--tmp", str(args.tmp)] if args.tmp else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        for line in output.splitlines():
            if line.startswith(FIGURES):
                runs.append(json.loads(line.removeprefix(FIGURES)))
            else:
                print(line, flush=True)
    report_scale(runs)


def validate_only(args: argparse.Namespace) -> None:
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
