"""Feedback: labels join to logged predictions; live accuracy; Seldon's feedback message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from monitor_data import CLASSES, make_texts, records, text_features, text_probabilities

from cdl_gitlab.monitor import FeedbackError
from cdl_gitlab.monitor.checks import Policy
from cdl_gitlab.monitor.drift_report import Served, generate
from cdl_gitlab.monitor.feedback import (
    FeedbackStore,
    live_accuracy,
    parse_seldon_feedback,
    record_feedback,
    truth_labels,
)
from cdl_gitlab.monitor.reference import compute_reference
from cdl_gitlab.scoring import ScoringStore

NOW = datetime.now(UTC)


def _scored(store: ScoringStore, n: int, version: str = "1") -> list[Any]:
    texts, labels = make_texts(n, np.random.default_rng(11))
    written = records(
        "text",
        texts,
        text_probabilities(texts),
        version=version,
        features=text_features(),
        start=NOW - timedelta(hours=3),
        batch=2,
    )
    store.write(written)
    return list(zip(written, labels, strict=True))


def test_truth_formats() -> None:
    assert truth_labels([[0, 1, 0], [0.1, 0.2, 0.7]], CLASSES) == ["sport", "tech"]
    assert truth_labels(["sport", ["tech"], 0, 2.0], CLASSES) == [
        "sport",
        "tech",
        "business",
        "tech",
    ]
    for bad in (["cooking"], [5], [[0, 1]], [True], [1.5]):
        with pytest.raises(FeedbackError):
            truth_labels(bad, CLASSES)


def test_feedback_joins_and_live_accuracy(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    scored = _scored(store, 120)
    _scored(store, 10, version="2")  # another version's predictions are not counted
    feedback = FeedbackStore(store)
    wrong = 0
    for i, (record, label) in enumerate(scored[:60]):
        truth = label
        if i % 4 == 0:  # a labeller disagrees with the model on every 4th item
            truth = next(c for c in CLASSES if c != record.predicted)
            wrong += 1
        record_feedback(feedback, record.request_id, record.item_index, truth)
    first, _ = scored[0]
    record_feedback(feedback, first.request_id, first.item_index, first.predicted)  # corrected
    wrong -= 1
    record_feedback(feedback, "no-such-request", 0, "sport")  # joins nothing
    accuracy = live_accuracy(store.engine, model="news", version="1", since=NOW - timedelta(days=1))
    model_right = sum(record.predicted == label for record, label in scored[:60])
    assert accuracy.labels == 60
    assert model_right == 60  # the toy model is right on clean text ...
    assert accuracy.correct == 60 - wrong  # ... so only the disagreements count as errors
    assert accuracy.accuracy == pytest.approx((60 - wrong) / 60)
    assert sum(v["labels"] for v in accuracy.per_class.values()) == 60
    empty = live_accuracy(store.engine, model="news", version="1", since=NOW - timedelta(minutes=1))
    assert empty.labels == 0 and empty.accuracy is None
    with pytest.raises(FeedbackError):
        record_feedback(feedback, "", 0, "sport")


def test_accuracy_below_gate_points_to_model_pipeline(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    scored = _scored(store, 150)
    for i, (record, _) in enumerate(scored[:40]):
        truth = record.predicted if i % 2 else next(c for c in CLASSES if c != record.predicted)
        record_feedback(store.url, record.request_id, record.item_index, truth)
    texts, labels = make_texts(300, np.random.default_rng(0))
    reference = compute_reference(
        "text", texts, text_probabilities(texts), text_features(), labels=labels
    )
    verdict = generate(
        engine=store.engine,
        served=Served("news", 1, None, True),
        task="text",
        reference=reference,
        reference_note="test",
        since=NOW - timedelta(1),
        until=NOW,
        policy=Policy(min_samples=100, min_labels=20, accuracy_floor=0.8),
        out=tmp_path / "r",
    )
    assert verdict["verdict"] == "drift"
    assert [r["check"] for r in verdict["reasons"]] == ["accuracy"]
    assert verdict["accuracy"]["labels"] == 40 and verdict["accuracy"]["accuracy"] == 0.5
    assert verdict["re_entry"]["pipeline"] == "model"
    assert verdict["episode"] == "news:v1:drift:accuracy"
    assert "**50.00%** (gate 80.00%)" in (tmp_path / "r" / "report.md").read_text()


def _feedback_message(request_id: str, truth: Any, key: str = "tags") -> dict[str, Any]:
    meta = {"tags": {"request_id": request_id}} if key == "tags" else {"puid": request_id}
    return {
        "request": {"data": {"ndarray": ["some text", "more text"]}},
        "response": {"meta": meta, "data": {"ndarray": [[0.1, 0.8, 0.1]] * 2}},
        "truth": truth,
        "reward": 1.0,
    }


def test_parse_seldon_feedback_json() -> None:
    message = _feedback_message("abc", {"data": {"ndarray": [[0, 1, 0], [0, 0, 1]]}})
    rows = parse_seldon_feedback(message, CLASSES)
    assert [(r["request_id"], r["item_index"], r["truth"]) for r in rows] == [
        ("abc", 0, "sport"),
        ("abc", 1, "tech"),
    ]
    puid = _feedback_message("p-1", {"strData": "business"}, key="puid")
    assert parse_seldon_feedback(puid, CLASSES)[0]["request_id"] == "p-1"
    tensor = _feedback_message("t", {"data": {"tensor": {"shape": [1, 3], "values": [0, 0, 1]}}})
    assert parse_seldon_feedback(tensor, CLASSES)[0]["truth"] == "tech"
    with pytest.raises(FeedbackError, match="names no prediction"):
        parse_seldon_feedback({"truth": {"strData": "sport"}}, CLASSES)
    with pytest.raises(FeedbackError, match="no truth"):
        parse_seldon_feedback(_feedback_message("abc", {}), CLASSES)


class FeedbackModel:
    """The part of the serving wrapper (cdl_gitlab.serving.server.CDLModel) that takes feedback."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.classes = CLASSES
        self._feedback = None

    def predict(self, X: Any, features_names: Any = None) -> Any:
        return X

    def send_feedback_raw(self, feedback: Any) -> Any:
        from seldon_core.flask_utils import SeldonMicroserviceException
        from seldon_core.utils import json_to_seldon_message

        from cdl_gitlab.monitor.errors import FeedbackError
        from cdl_gitlab.monitor.feedback import FeedbackStore, store_seldon_feedback

        try:
            if self._feedback is None:
                self._feedback = FeedbackStore(self.url)
            stored = store_seldon_feedback(self._feedback, feedback, self.classes)
        except FeedbackError as exc:
            raise SeldonMicroserviceException(
                str(exc), status_code=400, reason="BAD_FEEDBACK"
            ) from None
        return json_to_seldon_message({"meta": {"tags": {"feedback_stored": stored}}})


@pytest.mark.slow  # importing seldon_core imports TensorFlow (~10 s)
def test_seldon_feedback_endpoint_stores_labels(tmp_path: Path) -> None:
    """Seldon Core's real REST app routes /api/v1.0/feedback to send_feedback_raw."""
    from seldon_core.metrics import SeldonMetrics
    from seldon_core.utils import json_to_feedback
    from seldon_core.wrapper import get_rest_microservice

    proto = json_to_feedback(_feedback_message("abc", {"data": {"ndarray": [[0, 1, 0]]}}))
    assert parse_seldon_feedback(proto, CLASSES) == [
        {"request_id": "abc", "item_index": 0, "truth": "sport", "source": "seldon"}
    ]

    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    scored = _scored(store, 4)
    record = scored[0][0]
    metrics = SeldonMetrics()
    app = get_rest_microservice(FeedbackModel(store.url), metrics)
    client = app.test_client()
    body = _feedback_message(record.request_id, {"data": {"ndarray": [["sport"], ["tech"]]}})
    response = client.post("/api/v1.0/feedback", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["meta"]["tags"]["feedback_stored"] == 2
    accuracy = live_accuracy(store.engine, model="news", version="1", since=NOW - timedelta(days=1))
    assert accuracy.labels == 2
    bad = client.post("/api/v1.0/feedback", json=_feedback_message("x", {"strData": "cooking"}))
    assert bad.status_code == 400 and "cooking" in bad.get_data(as_text=True)
    del metrics


def test_feedback_and_reference_commands(text_project: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cdl_gitlab.cli import cli
    from cdl_gitlab.monitor.reference import save_reference
    from cdl_gitlab.scoring import open_scoring_store

    store = open_scoring_store(text_project)
    record = _scored(store, 4)[3][0]
    runner = CliRunner(mix_stderr=False)
    base = ["--config", str(text_project.root / "cdl.yaml"), "monitor"]
    result = runner.invoke(
        cli, [*base, "feedback", record.request_id, "tech", "--item", str(record.item_index)]
    )
    assert result.exit_code == 0, result.output
    accuracy = live_accuracy(store.engine, model="news", version="1", since=NOW - timedelta(days=1))
    assert accuracy.labels == 1 and accuracy.per_class == {
        "tech": {"labels": 1, "correct": int(record.predicted == "tech")}
    }
    result = runner.invoke(cli, [*base, "feedback", record.request_id, "cooking"])
    assert result.exit_code == 1 and "unknown class 'cooking'" in str(result.exception)

    texts, labels = make_texts(50, np.random.default_rng(2))
    path = save_reference(
        tmp_path / "reference.json",
        compute_reference("text", texts, text_probabilities(texts), text_features(), labels=labels),
    )
    result = runner.invoke(cli, [*base, "show-reference", str(path)])
    assert result.exit_code == 0 and "text reference of 50 items" in result.output
