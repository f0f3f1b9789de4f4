"""Synthetic Scoring Data for the monitoring tests: a tiny real text and image "model".

Text documents of a class are drawn from that class's word list plus shared words; the model
scores a document by how many words of each class it holds (softmax). Shifted traffic uses
words no class (and no vocabulary) knows and shorter documents. Images are noise around a
class-specific brightness; shifted images are brightened.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from cdl_gitlab.features.image import ImageDecoder
from cdl_gitlab.features.input_stats import image_stats, text_stats, vocabulary_set
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer, stems
from cdl_gitlab.scoring import ScoringRecord

CLASSES = ["business", "sport", "tech"]
WORDS = {
    "business": [
        "market",
        "shares",
        "profit",
        "bank",
        "economy",
        "investor",
        "trade",
        "company",
        "growth",
        "price",
    ],
    "sport": [
        "match",
        "goal",
        "team",
        "player",
        "coach",
        "season",
        "league",
        "cup",
        "win",
        "score",
    ],
    "tech": [
        "computer",
        "software",
        "phone",
        "internet",
        "network",
        "chip",
        "data",
        "device",
        "screen",
        "digital",
    ],
}
COMMON = ["the", "a", "of", "and", "to", "in", "said", "year", "new", "people", "time"]
FOREIGN = [
    "zorblat",
    "quimby",
    "frandle",
    "gostrel",
    "plinth",
    "wexmoor",
    "yarrowbe",
    "kelptan",
    "drossel",
    "mirkwen",
    "vantrel",
    "spoddle",
]
IMAGE_BRIGHTNESS = {"business": 0.2, "sport": 0.35, "tech": 0.5}


def text_features() -> FeatureState:
    documents = [" ".join(words + COMMON) for words in WORDS.values()]
    return FeatureState(TextVectorizer.fit(documents), LabelEncoder(CLASSES))


def image_features() -> FeatureState:
    return FeatureState(ImageDecoder(8, 8), LabelEncoder(CLASSES))


def make_texts(
    n: int, rng: np.random.Generator, *, shifted: bool = False
) -> tuple[list[str], list[str]]:
    """``n`` documents and their true classes; shifted ones are short and use foreign words."""
    texts, labels = [], []
    for _ in range(n):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        length = int(rng.integers(15, 40)) if shifted else int(rng.integers(60, 160))
        own = WORDS[label]
        pool = own + COMMON + (FOREIGN * 3 if shifted else [])
        words = [pool[int(i)] for i in rng.integers(len(pool), size=length)]
        words[:3] = [own[int(i)] for i in rng.integers(len(own), size=3)]
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(label)
    return texts, labels


def text_probabilities(texts: Sequence[str]) -> np.ndarray:
    """The toy text model: softmax over the counts of each class's stems."""
    class_stems = {c: set(stems(" ".join(words))) for c, words in WORDS.items()}
    scores = np.array(
        [[sum(s in class_stems[c] for s in stems(t)) for c in CLASSES] for t in texts],
        dtype=np.float64,
    )
    scores = scores / 12.0
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def make_images(
    n: int, rng: np.random.Generator, *, brighten: float = 0.0
) -> tuple[list[np.ndarray], list[str]]:
    images, labels = [], []
    for _ in range(n):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        pixels = rng.normal(IMAGE_BRIGHTNESS[label], 0.1, size=(8, 8)) + brighten
        images.append(np.clip(pixels, 0.0, 1.0).astype(np.float32))
        labels.append(label)
    return images, labels


def image_probabilities(images: Sequence[np.ndarray]) -> np.ndarray:
    """The toy image model: closeness of the mean brightness to each class's level."""
    means = np.array([float(np.mean(image)) for image in images])
    levels = np.array([IMAGE_BRIGHTNESS[c] for c in CLASSES])
    scores = -np.abs(means[:, None] - levels[None, :]) * 30.0
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def records(
    task: str,
    items: Sequence[Any],
    probabilities: np.ndarray,
    *,
    model: str = "news",
    version: str = "1",
    start: datetime | None = None,
    spacing: timedelta = timedelta(minutes=1),
    features: FeatureState | None = None,
    with_stats: bool = True,
    batch: int = 1,
) -> list[ScoringRecord]:
    """Scoring records as the serving wrapper writes them (``batch`` items per request)."""
    start = start or datetime.now(UTC) - timedelta(hours=6)
    vocabulary = vocabulary_set(features) if features is not None and task == "text" else None
    out = []
    request_id = ""
    for i, (item, row) in enumerate(zip(items, probabilities, strict=True)):
        if i % batch == 0:
            request_id = uuid.uuid4().hex
        if task == "text":
            stats = (
                text_stats(item, vocabulary)
                if with_stats
                else {"chars": len(item), "words": len(item.split())}
            )
        else:
            stats = image_stats(item)
        out.append(
            ScoringRecord(
                request_id=request_id,
                item_index=i % batch,
                model=model,
                version=version,
                ts=start + spacing * (i // batch),
                input_kind=task,
                input_text=item[:200] if task == "text" else None,
                input_stats=stats,
                predicted=CLASSES[int(np.argmax(row))],
                probabilities={c: float(p) for c, p in zip(CLASSES, row, strict=True)},
                latency_ms=float(5 + (i % 17)),
            )
        )
    return out


def rejected(
    n: int, *, model: str = "news", version: str = "1", start: datetime | None = None
) -> list[ScoringRecord]:
    start = start or datetime.now(UTC) - timedelta(hours=6)
    return [
        ScoringRecord(
            request_id=uuid.uuid4().hex,
            model=model,
            version=version,
            status="rejected",
            error="EMPTY_TEXT: no text",
            ts=start + timedelta(minutes=i),
            latency_ms=1.0,
        )
        for i in range(n)
    ]
