"""Cost of the per-request input statistics the serving wrapper stores as scoring data.

Usage: python benchmarks/input_stats.py [--texts 2000] [--images 20000]

Times :func:`cdl_gitlab.features.input_stats.text_stats` on an article-length text (~400 tokens,
against a small vocabulary) and :func:`cdl_gitlab.features.input_stats.image_stats` on a 28x28
image, and prints the mean cost per item in milliseconds (the budget the serving path was
designed for: under 5 ms per text and 1 ms per image).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cdl_gitlab.features.input_stats import image_stats, text_stats, vocabulary_set
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer

SENTENCE = "market shares rose as the economy grew"


def per_item(function, argument, count: int) -> float:
    function(*argument)  # warm-up
    started = time.perf_counter()
    for _ in range(count):
        function(*argument)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--images", type=int, default=20000)
    args = parser.parse_args()
    features = FeatureState(
        TextVectorizer.fit([SENTENCE, "the match ended"]), LabelEncoder(["a", "b"])
    )
    vocabulary = vocabulary_set(features)
    text = " ".join([SENTENCE] * 60)
    image = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    text_ms = per_item(text_stats, (text, vocabulary), args.texts) * 1000
    image_ms = per_item(image_stats, (image,), args.images) * 1000
    print(f"text_stats  (~{len(text.split())} words): {text_ms:.3f} ms per text")
    print(f"image_stats (28x28):          {image_ms:.4f} ms per image")


if __name__ == "__main__":
    main()
