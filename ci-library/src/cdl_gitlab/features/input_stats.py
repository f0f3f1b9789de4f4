"""Cheap per-input statistics the serving wrapper stores in ``scoring_records.input_stats``.

The same functions summarise the reference data (:mod:`cdl_gitlab.monitor.reference`), so live and
reference values are computed identically::

    vocabulary = vocabulary_set(predictor.features)       # once, at load
    text_stats("Markets fell ...", vocabulary)
    # {"n_chars": 16, "n_tokens": 2, "n_oov": 0, "oov_rate": 0.0, "top_stems": {"market": 1, ...}}
    image_stats(pixels)   # {"mean", "std", "min", "max", "shape"} on the 0..1 scale
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from cdl_gitlab.features.text import stems

TOP_STEMS = 5
"""In-vocabulary stems kept per text (the token-frequency profile is built from them)."""


def vocabulary_set(features: Any) -> frozenset[str]:
    """The stems of a text model's vocabulary, from a FeatureState, a TextVectorizer or a list."""
    transform = getattr(features, "transform", features)
    vocabulary = getattr(transform, "vocabulary", transform)
    return frozenset(vocabulary)


def text_stats(
    text: str, vocabulary: Container[str], tokens: Sequence[str] | None = None
) -> dict[str, Any]:
    """Length (characters, tokens), out-of-vocabulary rate and the most frequent known stems.

    ``vocabulary`` should be a set (see :func:`vocabulary_set`): membership is tested per token.
    ``tokens``: the stems of ``text`` if the caller has them already (``stems(text)``).
    """
    if tokens is None:
        tokens = stems(text)
    known = [stem for stem in tokens if stem in vocabulary]
    n_oov = len(tokens) - len(known)
    top = Counter(known).most_common(TOP_STEMS)
    return {
        "n_chars": len(text),
        "n_tokens": len(tokens),
        "n_oov": n_oov,
        "oov_rate": round(n_oov / len(tokens), 6) if tokens else 0.0,
        "top_stems": dict(top),
    }


def image_stats(array: Any) -> dict[str, Any]:
    """Pixel statistics on the 0..1 scale the model sees (0..255 input is rescaled)."""
    pixels = np.asarray(array, dtype=np.float32)
    if pixels.size and float(pixels.max()) > 1.0:
        pixels = pixels / 255.0
    if pixels.size == 0:
        return {"shape": list(pixels.shape), "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    return {
        "shape": list(pixels.shape),
        "mean": round(float(pixels.mean()), 6),
        "std": round(float(pixels.std()), 6),
        "min": round(float(pixels.min()), 6),
        "max": round(float(pixels.max()), 6),
    }
