"""The gate's scores: scikit-learn's definitions, computed with NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from cdl_gitlab.model.evaluate import score

CLASSES = ["business", "entertainment", "politics", "sport", "tech"]


def _sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    labels = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    macro = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro": dict(zip(("precision", "recall", "f1"), macro[:3], strict=True)),
        "per_class": {
            name: {
                "precision": precision[i],
                "recall": recall[i],
                "f1": f1[i],
                "support": support[i],
            }
            for i, name in enumerate(CLASSES)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([0, 1, 2, 3, 4, 0, 1], [0, 1, 2, 3, 4, 0, 1]),  # all right
        ([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 2, 2]),  # classes 3 and 4 absent
        ([0, 1, 2, 3], [4, 4, 4, 4]),  # one class predicted, never true
        ([3, 3, 3], [3, 3, 0]),
    ],
)
def test_scores_match_scikit_learn(y_true: list[int], y_pred: list[int]) -> None:
    ours = score(CLASSES, np.array(y_true), np.array(y_pred))
    theirs = _sklearn(np.array(y_true), np.array(y_pred))
    assert ours["confusion"] == theirs["confusion"]
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-12)
    for key in ("precision", "recall", "f1"):
        assert ours["macro"][key] == pytest.approx(theirs["macro"][key], abs=1e-12)
    for name in CLASSES:
        for key, value in theirs["per_class"][name].items():
            assert ours["per_class"][name][key] == pytest.approx(value, abs=1e-12), (name, key)


def test_scores_match_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        y_true = rng.integers(0, len(CLASSES), size=int(rng.integers(1, 60)))
        y_pred = np.where(rng.random(y_true.size) < 0.6, y_true, rng.integers(0, 5, y_true.size))
        ours = score(CLASSES, y_true, y_pred)
        theirs = _sklearn(y_true, y_pred)
        assert ours["confusion"] == theirs["confusion"]
        assert ours["macro"]["f1"] == pytest.approx(theirs["macro"]["f1"], abs=1e-12)
        assert [ours["per_class"][n]["f1"] for n in CLASSES] == pytest.approx(
            [theirs["per_class"][n]["f1"] for n in CLASSES], abs=1e-12
        )
