"""Fashion-MNIST use case figures: data pipeline, training and test accuracy, TFLite compression.

Renders the template with ``starter=fashion`` into a scratch folder and runs the use case on
the local profile: the data pipeline (collect the four idx files, keep their train/test
split as PNG items, validate, idx labels), then the MLP baseline and the CNN option
(``model/const.yaml`` with ``arch`` and ``epochs`` set), each evaluated by the gate on the
held-out test set, then TFLite post-training quantization of the CNN.

    .venv/bin/python benchmarks/fashion.py [--train 6000 --test 1000] [--epochs 5]

The real Fashion-MNIST files cannot be downloaded on this machine, so by default it
generates them (class patterns shifted and noised; ``--noise`` and ``--shift`` set the
difficulty). To reproduce on the real data, put the four files
(``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz`` from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/)
in a folder and run ``benchmarks/fashion.py --mirror FOLDER --epochs 10``; targets on the real
data: MLP baseline test accuracy >= 0.88, CNN >= 0.91.

``--digits`` runs the same image path on real images that a package ships: scikit-learn's
digits (1,797 handwritten 8x8 images, 16 grey levels), scaled to 0..255, enlarged 3x to 24x24
and centred in 28x28, split 80/20 stratified (seed 0) and written as the four idx files;
the ten digits stand in for the ten clothing classes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402

from cdl_gitlab.config import Settings, load_settings  # noqa: E402
from cdl_gitlab.data.names import SPLITS, validated_repo  # noqa: E402
from cdl_gitlab.data.pachyderm.runner import run_pipelines  # noqa: E402
from cdl_gitlab.data.steps import pipeline  # noqa: E402
from cdl_gitlab.data.stores import open_store  # noqa: E402
from rendering import render, snapshot_template  # noqa: E402
from use_cases.fashion_data import write_mirror  # noqa: E402

TARGETS = {"mlp": 0.88, "cnn": 0.91}


def write_digits(folder: Path) -> Path:
    """scikit-learn's digits as the four gzip idx files of a 28x28 image set."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from cdl_gitlab.data.formats import idx_files as idx
    from cdl_gitlab.data.formats.idx import FILES

    digits = load_digits()
    small = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (n, 8, 8), 0..255
    big = np.kron(small, np.ones((1, 3, 3), dtype=np.uint8))  # (n, 24, 24)
    images = np.pad(big, ((0, 0), (2, 2), (2, 2)))  # (n, 28, 28)
    labels = digits.target.astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=0, stratify=labels
    )
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        idx.write(folder / FILES[split]["images"], x, "images")
        idx.write(folder / FILES[split]["labels"], y, "labels")
    return folder


def timed(step, *args):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = step(*args)
    return result, time.monotonic() - started


def data_pipeline(settings: Settings) -> dict[str, float]:
    """Seconds of each data step."""
    store = open_store(settings)
    quiet = lambda _line: None  # noqa: E731
    validate = [validated_repo(settings, name) for name in SPLITS]
    steps = {
        "collect (read + check 4 idx files, commit)": lambda: pipeline.collect(
            settings, store, quiet
        ),
        "split (official split -> PNG items)": lambda: pipeline.split(settings, store, quiet),
        "validate (both pipelines)": lambda: run_pipelines(settings, store, validate, quiet),
        "labels (idx labels -> Label Studio -> table)": lambda: pipeline.label(
            settings, store, quiet
        ),
    }
    return {name: timed(step)[1] for name, step in steps.items()}


def experiment(settings: Settings, arch: str, epochs: int) -> Path:
    config = yaml.safe_load(settings.path("model/const.yaml").read_text())
    config["name"] = f"{config['name']}-{arch}"
    config["hyperparameters"].update({"arch": arch, "epochs": epochs})
    path = settings.path(f"model/const.{arch}.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=6000, help="generated training images")
    parser.add_argument("--test", type=int, default=1000, help="generated test images")
    parser.add_argument("--noise", type=float, default=0.35, help="generated pixel noise")
    parser.add_argument("--shift", type=int, default=4, help="largest generated offset (px)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per model")
    parser.add_argument("--mirror", type=Path, help="a folder with the four real idx files")
    parser.add_argument(
        "--digits", action="store_true", help="real images: scikit-learn's digits as idx files"
    )
    parser.add_argument("--no-compress", action="store_true", help="skip TFLite compression")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)

    from cdl_gitlab.deploy.compression import compress_version
    from cdl_gitlab.model.evaluate import evaluate_version
    from cdl_gitlab.model.train import train_local

    scratch = Path(tempfile.mkdtemp(prefix="cdl-fashion-bench-"))
    try:
        if args.mirror:
            mirror, origin = args.mirror.resolve(), f"real files in {args.mirror}"
        elif args.digits:
            mirror = write_digits(scratch / "mirror")
            origin = "scikit-learn digits (1,797 real images: 1,437 train / 360 test, 28x28)"
        else:
            mirror, seconds = timed(
                write_mirror,
                scratch / "mirror",
                args.train,
                args.test,
                0,
                True,
                args.noise,
                args.shift,
            )
            origin = (
                f"generated ({args.train} train / {args.test} test, noise {args.noise}, "
                f"shift {args.shift} px, {seconds:.1f} s to write)"
            )
        template = snapshot_template(scratch / "template")
        root = render(
            template,
            scratch / "project",
            {"starter": "fashion", "project_name": "Fashion benchmark"},
        )
        os.environ["CDL_DATA_MIRROR"] = str(mirror)
        for name in ("CDL_PROFILE", "CDL_CONFIG", "CDL_MODEL_VERSION"):
            os.environ.pop(name, None)
        settings = load_settings(root / "cdl.yaml")
        print(f"Fashion-MNIST use case, local profile, {os.cpu_count()} CPUs; data: {origin}")

        steps = data_pipeline(settings)
        counts = {
            name: pipeline.validation_summary(settings, open_store(settings), name)
            for name in SPLITS
        }
        items = sum(summary["total"] for summary in counts.values())
        print(
            f"\ndata pipeline ({counts['train']['kept']} train + {counts['test']['kept']} "
            f"test images kept of {items})"
        )
        for name, seconds in steps.items():
            print(f"  {name:<46} {seconds:7.1f} s")
        total = sum(steps.values())
        print(f"  {'total':<46} {total:7.1f} s  ({items / total:.0f} images/s)")

        print(
            f"\ntraining ({args.epochs} epochs, batch 64) and the gate "
            f"(threshold {settings.config.training.accuracy_threshold})"
        )
        print(
            f"  {'model':<5} {'train s':>8} {'val acc':>8} {'test acc':>9}  gate    "
            "real-data target"
        )
        versions = {}
        for arch in ("mlp", "cnn"):
            result = train_local(settings, experiment(settings, arch, args.epochs))
            assert result.version is not None
            versions[arch] = result.version.version
            evaluation = evaluate_version(settings, version=result.version.version)
            gate = "passes" if evaluation.passed else "fails "
            print(
                f"  {arch:<5} {result.wall_seconds:8.1f} "
                f"{result.validation.get('validation_accuracy', float('nan')):8.4f} "
                f"{evaluation.accuracy:9.4f}  {gate}  >= {TARGETS[arch]}"
                + (
                    f" ({'met' if evaluation.accuracy >= TARGETS[arch] else 'NOT met'})"
                    if args.mirror
                    else ""
                )
            )

        if not args.no_compress:
            compressed, seconds = timed(compress_version, settings, versions["cnn"])
            c = compressed.comparison
            size, latency, acc = c["size_bytes"], c["latency_ms"], c["accuracy"]
            print(f"\nTFLite dynamic-range quantization of the CNN ({seconds:.1f} s)")
            print(
                f"  size {size['original']:,} -> {size['compressed']:,} bytes "
                f"(x{size['ratio']:.3f}); single-image latency p50 "
                f"{latency['original']['p50']:.2f} -> {latency['compressed']['p50']:.2f} ms; "
                f"test accuracy {acc['original']:.4f} -> {acc['compressed']:.4f}"
            )
    finally:
        if args.keep:
            print(f"\nkept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
