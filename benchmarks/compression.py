"""Compression figures: size ratio, latency ratio and accuracy delta of quantized models.

Usage: python benchmarks/compression.py [--runs 300] [--project DIR --version N]

Without ``--project`` it measures two generated models: the news-sized PyTorch text baseline
(10,000-stem vocabulary, widths 512/256/128/64; dynamic int8 quantization of the Linear
layers) trained briefly on synthetic texts, and a Keras image MLP (TFLite dynamic-range
quantization) trained on synthetic 28x28 images; accuracy is measured on held-out synthetic
items. With ``--project`` it compresses that project's version against its real test split.
Nothing is asserted; the compressed versions are registered in temporary registries only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "deploy")]

from deploy_models import (  # noqa: E402
    images,
    keras_image_checkpoint,
    make_project,
    register,
    text_corpus,
    torch_text_checkpoint,
)

from cdl_gitlab.config import load_settings  # noqa: E402
from cdl_gitlab.deploy.compression import CompressionRejected, compress_version  # noqa: E402


def report(title: str, comparison: dict) -> None:
    size, latency, acc = comparison["size_bytes"], comparison["latency_ms"], comparison["accuracy"]
    print(f"{title} [{comparison['format']}]")
    print(
        f"  size      {size['original']:>12,} -> {size['compressed']:>12,} bytes   "
        f"ratio {size['ratio']:.3f}"
    )
    print(
        f"  latency   p50 {latency['original']['p50']:.3f} -> "
        f"{latency['compressed']['p50']:.3f} ms, p99 {latency['original']['p99']:.3f} -> "
        f"{latency['compressed']['p99']:.3f} ms   ratio(p50) {latency['ratio_p50']:.3f}"
    )
    print(
        f"  accuracy  {acc['original']:.4f} -> {acc['compressed']:.4f}   "
        f"delta {acc['compressed'] - acc['original']:+.4f} on {acc['test_items']} items   gate "
        f"{'passed' if comparison['passed'] else 'REFUSED'}"
    )


def run(settings, version, data, runs: int, title: str) -> None:
    try:
        result = compress_version(settings, version, data=data, max_drop=1.0)
        comparison = result.comparison
    except CompressionRejected as exc:
        comparison = exc.comparison
    report(f"{title} (latency over {runs} single-item calls)", comparison)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--project", type=Path)
    parser.add_argument("--version", type=int, default=None)
    args = parser.parse_args()
    runs = min(args.runs, 5000)

    if args.project:
        settings = load_settings(args.project / "cdl.yaml")
        result = compress_version(settings, args.version, max_drop=1.0)
        report(f"{settings.config.model.name} from {args.project}", result.comparison)
        return

    with tempfile.TemporaryDirectory(prefix="cdl-bench-compression-") as scratch:
        root = Path(scratch)
        text = make_project(root / "news", "pytorch", "text", "news-bench")
        text = _with_runs(text, runs)
        version = register(text, torch_text_checkpoint(root / "t", news_sized=True))
        texts, labels = text_corpus(100, seed=11)
        run(
            text,
            version,
            ([t.encode() for t in texts], labels, {"synthetic": "text"}),
            runs,
            "news-sized PyTorch text baseline",
        )

        image = _with_runs(make_project(root / "fashion", "keras", "image", "fashion-bench"), runs)
        version = register(image, keras_image_checkpoint(root / "i"))
        pixels, labels = images(100, seed=12)
        run(
            image,
            version,
            (list(pixels), labels, {"synthetic": "image"}),
            runs,
            "Keras image MLP (hidden 16)",
        )


def _with_runs(settings, runs: int):
    path = settings.root / "cdl.yaml"
    path.write_text(path.read_text().replace("latency_runs: 20", f"latency_runs: {runs}"))
    return load_settings(path)


if __name__ == "__main__":
    main()
