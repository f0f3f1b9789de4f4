"""The model evaluation gate of bbc-news (the paper's unit-test gate).

Evaluates the latest registered version (or ``$CDL_MODEL_VERSION``) on the held-out test set
at its recorded data version, writes the test metrics into the model registry, writes
``reports/model/`` (``metrics.txt`` for GitLab's metrics report, ``report.md`` with plots) and
fails when the test accuracy is below ``training.accuracy_threshold`` of ``cdl.yaml``.

Run: ``pytest test/test_model_accuracy.py --junitxml=reports/junit-model.xml``
"""

from __future__ import annotations

from cdl_gitlab.config import load_settings
from cdl_gitlab.model.evaluate import evaluate_version


def test_model_accuracy() -> None:
    settings = load_settings()
    result = evaluate_version(settings, settings.config.model.name)
    assert result.accuracy >= result.threshold, (
        f"test accuracy {result.accuracy:.4f} of {result.model} v{result.version} is below "
        f"the threshold {result.threshold:.4f} (training.accuracy_threshold in cdl.yaml); "
        f"see {result.artifacts.get('report')}"
    )
