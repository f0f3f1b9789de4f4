"""Training figures on CPU: throughput (samples/s) of both trials and start-up overhead.

Usage: python benchmarks/training.py [--docs N] [--images N] [--batches N] [--only TEXT]

For each trial (PyTorch text baseline at the news use case's sizes: 10,000-stem vocabulary,
widths 512/256/128/64, batch 32; Keras image CNN and MLP at Fashion-MNIST's 28x28, batch 64)
it builds a generated project, runs ``cdl model train --max-steps N`` in a fresh process
(as a CI job does) and reports:

- time from process start to the first reported metric (imports, data loading, feature
  fitting, the first training batches up to the first report), and
- training throughput: samples/s between consecutive training-metric reports (every 20
  batches) with no validation between them, from the experiment registry's timestamps
  (steady state: no start-up, no validation).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "model")]

from model_fixtures import image_corpus, ingest, make_project, set_hparams  # noqa: E402

from cdl_gitlab.config import load_settings  # noqa: E402
from cdl_gitlab.tracking import open_experiment_registry  # noqa: E402

RUNNER = (
    "import sys; from cdl_gitlab.cli import cli, main; from cdl_gitlab.cli.model_cmd import model\n"
    "'model' in cli.commands or cli.add_command(model); main(sys.argv[1:])"
)


def news_like_corpus(docs: int, seed: int) -> dict[str, bytes]:
    """Documents over a Zipf-distributed 20,000-word vocabulary, class-dependent."""
    rng = random.Random(seed)
    classes = ["business", "sport", "tech"]
    words = [f"w{n}x" for n in range(20_000)]
    weights = [1.0 / (n + 1) for n in range(len(words))]
    files = {}
    for i in range(docs):
        label = classes[i % len(classes)]
        offset = classes.index(label) * 500
        text = rng.choices(words, weights=weights, k=300)
        text += [words[offset + rng.randrange(500)] for _ in range(40)]
        files[f"{label}/{seed}-{i:05d}.txt"] = " ".join(text).encode()
    return files


def build(root: Path, framework: str, task: str, items: int, hparams: dict) -> Path:
    settings = make_project(root, framework, task, per_class=2, test_per_class=2)
    corpus = news_like_corpus(items, 1) if task == "text" else image_corpus(items // 3, 1)
    test = news_like_corpus(30, 2) if task == "text" else image_corpus(10, 2)
    ingest(settings, "train", corpus)
    ingest(settings, "test", test)
    set_hparams(settings.path("model/const.yaml"), hparams)
    return settings.root


def run_cli(root: Path, batches: int) -> tuple[datetime, float]:
    """``cdl model train`` in a new process: (its start time, total seconds)."""
    command = [
        sys.executable,
        "-c",
        RUNNER,
        "--config",
        str(root / "cdl.yaml"),
        "model",
        "train",
        "--max-steps",
        str(batches),
        "--no-register",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started_at = datetime.now(UTC)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if result.returncode != 0:
        raise SystemExit(f"cdl model train failed in {root}:\n{result.stderr[-2000:]}")
    return started_at, time.monotonic() - started


def first_metric_seconds(root: Path, started_at: datetime) -> float:
    """Seconds from the process start to the first metric report in the experiment registry."""
    settings = load_settings(root / "cdl.yaml")
    trial = open_experiment_registry(settings).list_experiments()[-1].trials[0]
    first = min(report.reported for reports in trial.metrics.values() for report in reports)
    return (first - started_at).total_seconds()


def throughput(root: Path, batch_size: int) -> float:
    """Samples/s over consecutive training reports with no validation between them."""
    settings = load_settings(root / "cdl.yaml")
    trial = open_experiment_registry(settings).list_experiments()[-1].trials[0]
    training = trial.metrics["training"]
    validations = [report.reported for report in trial.metrics.get("validation", [])]
    batches = seconds = 0.0
    for before, after in itertools.pairwise(training):
        if any(before.reported < moment < after.reported for moment in validations):
            continue
        batches += after.steps_completed - before.steps_completed
        seconds += (after.reported - before.reported).total_seconds()
    if not seconds:
        raise SystemExit("no two training reports without a validation between; raise --batches")
    return batches * batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1500, help="training documents (text)")
    parser.add_argument("--images", type=int, default=6000, help="training images")
    parser.add_argument("--batches", type=int, default=120, help="batches to train")
    parser.add_argument("--only", default="", help="run the trials whose label contains this")
    args = parser.parse_args()
    cases = [
        (
            "PyTorch text baseline",
            "pytorch",
            "text",
            args.docs,
            {
                "vocab_size": 10_000,
                "hidden1": 512,
                "hidden2": 256,
                "hidden3": 128,
                "hidden4": 64,
                "global_batch_size": 32,
                "learning_rate": 0.001,
                "validation_batches": args.batches,
            },
        ),
        (
            "PyTorch image MLP",
            "pytorch",
            "image",
            args.images,
            {
                "arch": "mlp",
                "hidden": 128,
                "global_batch_size": 64,
                "validation_batches": args.batches,
            },
        ),
        (
            "Keras image CNN",
            "keras",
            "image",
            args.images,
            {"arch": "cnn", "hidden": 128, "filters1": 16, "filters2": 32, "global_batch_size": 64},
        ),
        (
            "Keras image MLP",
            "keras",
            "image",
            args.images,
            {"arch": "mlp", "hidden": 128, "global_batch_size": 64},
        ),
    ]
    print(f"CPU cores: {os.cpu_count()}; {args.batches} batches per run")
    print(f"{'trial':<24} {'samples/s':>10} {'first metric s':>15} {'total s':>8}")
    with tempfile.TemporaryDirectory(prefix="cdl-bench-") as scratch:
        for label, framework, task, items, hparams in cases:
            if args.only.lower() not in label.lower():
                continue
            root = build(Path(scratch) / label.replace(" ", "-"), framework, task, items, hparams)
            started_at, total = run_cli(root, args.batches)
            first = first_metric_seconds(root, started_at)
            rate = throughput(root, int(hparams["global_batch_size"]))
            print(f"{label:<24} {rate:>10.0f} {first:>15.1f} {total:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
