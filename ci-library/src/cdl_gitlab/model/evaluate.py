"""The evaluation gate: a registered version on the held-out test set.

``evaluate_version`` loads the version (latest, ``$CDL_MODEL_VERSION`` or the given one) and the
test split at the data version its lineage recorded, computes accuracy, per-class
precision/recall/F1 and the confusion matrix, writes them into the version's metadata
(``metrics.test`` and ``lineage.metrics.test``), and writes ``metrics.txt`` (OpenMetrics, for
GitLab's metrics report) and a Markdown report with plots.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.config import Settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.registry.base import ModelVersion

logger = logging.getLogger(__name__)

VERSION_ENV = "CDL_MODEL_VERSION"
REPORT_DIR = "reports/model"


class GateFailed(CDLError):
    """The evaluated version is below the accuracy threshold."""

    exit_code = 1


@dataclass
class Evaluation:
    """Test metrics of one model version and the gate's verdict."""

    model: str
    version: int
    classes: list[str]
    accuracy: float
    threshold: float
    per_class: dict[str, dict[str, float]]
    macro: dict[str, float]
    confusion: list[list[int]]
    n_items: int
    test_data: dict[str, str]
    report_dir: Path | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.accuracy >= self.threshold

    @property
    def message(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"{self.model} v{self.version} {verdict} the gate: test accuracy "
            f"{self.accuracy:.4f} {'>=' if self.passed else '<'} threshold {self.threshold:.4f} "
            f"({self.n_items} test items)"
        )

    def metrics(self) -> dict[str, Any]:
        """The test metrics as stored in the registry."""
        return {
            "accuracy": self.accuracy,
            "precision_macro": self.macro["precision"],
            "recall_macro": self.macro["recall"],
            "f1_macro": self.macro["f1"],
            "n_items": self.n_items,
            "per_class": self.per_class,
            "confusion_matrix": {"classes": self.classes, "matrix": self.confusion},
        }


def requested_version(version: int | None) -> int | None:
    """``version``, else ``$CDL_MODEL_VERSION``, else None (the latest)."""
    if version is not None:
        return version
    value = os.environ.get(VERSION_ENV, "").strip()
    if not value or value == "latest":
        return None
    try:
        return int(value)
    except ValueError:
        raise CDLError(f"{VERSION_ENV}={value!r}: expected a version number or 'latest'") from None


def score(classes: list[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1 and the confusion matrix.

    The definitions of scikit-learn's ``precision_recall_fscore_support(labels=...,
    zero_division=0)`` (F1 as ``2 tp / (2 tp + fp + fn)``, 0 where a denominator is 0; macro:
    the unweighted mean over the classes), computed from the confusion matrix with NumPy:
    importing ``sklearn.metrics`` costs a gate 1-2 s.
    """
    k = len(classes)
    truth = np.asarray(y_true, dtype=np.int64)
    predicted = np.asarray(y_pred, dtype=np.int64)
    known = (truth >= 0) & (truth < k) & (predicted >= 0) & (predicted < k)
    confusion = np.bincount(truth[known] * k + predicted[known], minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    precision = _ratio(tp, predicted_count)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, predicted_count + support)
    return {
        "accuracy": float(np.mean(truth == predicted)) if truth.size else 0.0,
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion.tolist(),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` element-wise, 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _checkpoint_folder(registry: Any, found: ModelVersion, scratch: Path) -> Path:
    if found.path is not None and Path(found.path).is_dir():
        return Path(found.path)
    return registry.download(found.model, found.version, dest=scratch / "checkpoint")


def recorded_test_ref(found: ModelVersion) -> str | None:
    """The test data commit recorded in the version's lineage (None: the data branch)."""
    lineage = found.metadata.get("lineage") or {}
    test = (lineage.get("data") or {}).get("test") or {}
    return test.get("commit") or None


def evaluate_version(
    settings: Settings,
    model_name: str | None = None,
    version: int | None = None,
    *,
    report_dir: Path | None = None,
    record: bool = True,
) -> Evaluation:
    """Evaluate a registered version on the test split; record metrics and write the report."""
    from cdl_gitlab.data.dataset import load_split
    from cdl_gitlab.model.evaluation_report import write_report
    from cdl_gitlab.model.inputs import item_fields
    from cdl_gitlab.model.predictor import load_predictor
    from cdl_gitlab.registry import open_registry

    name = model_name or settings.config.model.name
    registry = open_registry(settings)
    found = registry.get_version(name, requested_version(version))
    split = load_split(settings, "test", ref=recorded_test_ref(found))
    items = [item_fields(item) for item in split.items]
    if not items:
        raise CDLError(f"no labelled test items at {split.version}: label the test split first")
    with tempfile.TemporaryDirectory(prefix="cdl-eval-") as scratch:
        predictor = load_predictor(_checkpoint_folder(registry, found, Path(scratch)))
        probabilities = predictor.predict_proba([content for _, _, content in items])
    classes = predictor.classes
    unknown = sorted({label for _, label, _ in items} - set(classes))
    if unknown:
        raise CDLError(f"test labels {unknown} are not classes of {name} v{found.version}")
    index = {label: i for i, label in enumerate(classes)}
    y_true = np.array([index[label] for _, label, _ in items])
    scores = score(classes, y_true, probabilities.argmax(axis=1))
    version_info = split.version
    result = Evaluation(
        model=name,
        version=found.version,
        classes=classes,
        accuracy=scores["accuracy"],
        threshold=float(settings.config.training.accuracy_threshold),
        per_class=scores["per_class"],
        macro=scores["macro"],
        confusion=scores["confusion"],
        n_items=len(items),
        test_data={
            "repo": version_info.repo,
            "branch": version_info.branch,
            "commit": version_info.commit,
        },
    )
    if record:
        metrics = result.metrics()
        updated = registry.add_metadata(
            name,
            found.version,
            {
                "metrics": {"test": metrics},
                "lineage": {"metrics": {"test": metrics}, "data": {"test": result.test_data}},
            },
            overwrite=True,
        )
        found = updated
    result.report_dir = report_dir or settings.path(REPORT_DIR)
    result.artifacts = write_report(settings, registry, found, result, result.report_dir)
    logger.info("%s", result.message)
    return result
