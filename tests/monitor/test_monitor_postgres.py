"""The monitoring report and feedback against the real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from monitor_data import CLASSES, make_texts, records, text_features, text_probabilities

from cdl_gitlab.cli import cli
from cdl_gitlab.config import Settings
from cdl_gitlab.monitor.feedback import FeedbackStore, live_accuracy, record_feedback
from cdl_gitlab.monitor.reference import compute_reference, save_reference
from cdl_gitlab.scoring import ScoringStore

pytestmark = pytest.mark.postgres


def test_report_and_feedback_on_postgres(
    postgres_url: str, text_project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    store = ScoringStore(postgres_url)
    rng = np.random.default_rng(21)
    texts, labels = make_texts(300, rng)
    reference = compute_reference(
        "text", texts, text_probabilities(texts), text_features(), labels=labels
    )
    save_reference(tmp_path / "reference.json", reference)
    clean, truth = make_texts(200, rng)
    written = records(
        "text",
        clean,
        text_probabilities(clean),
        version="1",
        features=text_features(),
        start=now - timedelta(hours=4),
        batch=5,
    )
    store.write(written)
    shifted, _ = make_texts(200, rng, shifted=True)
    store.write(
        records(
            "text",
            shifted,
            text_probabilities(shifted),
            version="2",
            features=text_features(),
            start=now - timedelta(hours=4),
        )
    )
    feedback = FeedbackStore(postgres_url)
    for i, (record, label) in enumerate(zip(written[:30], truth[:30], strict=True)):
        wrong = next(c for c in CLASSES if c != label)
        record_feedback(feedback, record.request_id, record.item_index, wrong if i < 6 else label)
    accuracy = live_accuracy(store.engine, model="news", version="1", since=now - timedelta(days=1))
    assert (accuracy.labels, accuracy.correct) == (30, 24)

    monkeypatch.setenv("CDL_TEST_SCORING_DSN", postgres_url)
    runner = CliRunner(mix_stderr=False)
    base = [
        "--config",
        str(text_project.root / "cdl.yaml"),
        "--profile",
        "cluster",
        "monitor",
        "report",
        "--json",
        "--reference",
        str(tmp_path / "reference.json"),
    ]
    ok = runner.invoke(cli, [*base, "--version", "1", "--out", str(tmp_path / "v1")])
    assert ok.exit_code == 0, (ok.output, ok.stderr)
    verdict = json.loads(ok.output)
    assert verdict["verdict"] == "ok" and verdict["accuracy"]["accuracy"] == 0.8
    drift = runner.invoke(cli, [*base, "--version", "2", "--out", str(tmp_path / "v2")])
    assert drift.exit_code == 3, (drift.output, drift.stderr)
    assert {r["check"] for r in json.loads(drift.output)["reasons"]} >= {"oov_rate", "n_chars"}
