"""Ground-truth feedback: the ``scoring_feedback`` table beside ``scoring_records``.

A feedback row names a logged prediction by ``(request_id, item_index)`` and gives its true
class. The serving wrapper's ``send_feedback_raw`` hands Seldon's ``Feedback`` message to
:func:`store_seldon_feedback`; ``cdl monitor feedback`` and :func:`record_feedback` write
single labels. :func:`live_accuracy` joins labels to predictions (the latest label of an
item wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, insert, select

from cdl_gitlab.monitor.errors import FeedbackError
from cdl_gitlab.monitor.live import as_utc
from cdl_gitlab.scoring import ScoringStore
from cdl_gitlab.scoring.tables import SOURCE_CLI, scoring_feedback, scoring_records

SOURCE_SELDON = "seldon"


class FeedbackStore:
    """Reads and writes feedback rows in the scoring database (migrated with it)."""

    def __init__(self, url_or_store: str | ScoringStore) -> None:
        self.scoring = (
            url_or_store if isinstance(url_or_store, ScoringStore) else ScoringStore(url_or_store)
        )
        self.engine: Engine = self.scoring.engine

    def write(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert feedback rows (``request_id``, ``item_index``, ``truth``, ``source``, ``ts``)."""
        if not rows:
            return 0
        now = datetime.now(UTC)
        values = [
            {
                "request_id": str(row["request_id"]),
                "item_index": int(row.get("item_index", 0)),
                "truth": str(row["truth"]),
                "source": str(row.get("source", SOURCE_CLI)),
                "ts": row.get("ts") or now,
            }
            for row in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(scoring_feedback), values)
        return len(values)

    def dispose(self) -> None:
        self.scoring.dispose()


def record_feedback(
    url_or_store: str | ScoringStore | FeedbackStore,
    request_id: str,
    item_index: int,
    truth: str,
    *,
    source: str = SOURCE_CLI,
) -> None:
    """Store the true class ``truth`` of item ``item_index`` of request ``request_id``."""
    if not request_id:
        raise FeedbackError("feedback needs the request id of the logged prediction")
    if item_index < 0:
        raise FeedbackError(f"item index {item_index} is negative")
    store = url_or_store if isinstance(url_or_store, FeedbackStore) else FeedbackStore(url_or_store)
    store.write(
        [{"request_id": request_id, "item_index": item_index, "truth": truth, "source": source}]
    )


# -- Seldon's Feedback message ---------------------------------------------------------------


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    if hasattr(message, "DESCRIPTOR"):
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(message)
    raise FeedbackError(f"unsupported feedback message of type {type(message).__name__}")


def feedback_request_id(feedback: Mapping[str, Any]) -> str:
    """The prediction's id: ``response.meta.tags.request_id`` (what the CDL wrapper returns),
    else ``response.meta.puid``, else ``request.meta.puid``."""
    response_meta = (feedback.get("response") or {}).get("meta") or {}
    request_meta = (feedback.get("request") or {}).get("meta") or {}
    for candidate in (
        (response_meta.get("tags") or {}).get("request_id"),
        response_meta.get("puid"),
        request_meta.get("puid"),
    ):
        if candidate:
            return str(candidate)
    raise FeedbackError(
        "feedback names no prediction: send the prediction's response (its meta.tags.request_id "
        "or meta.puid) or a request with meta.puid"
    )


def _truth_values(truth: Mapping[str, Any]) -> Any:
    if truth.get("strData"):
        return [truth["strData"]]
    if "jsonData" in truth:
        return truth["jsonData"]
    data = truth.get("data") or {}
    if "ndarray" in data:
        return data["ndarray"]
    if "tensor" in data:
        tensor = data["tensor"]
        return (
            np.asarray(tensor.get("values", []), dtype=np.float64)
            .reshape([int(n) for n in tensor.get("shape", [-1])])
            .tolist()
        )
    raise FeedbackError("feedback has no truth (truth.data.ndarray, tensor, strData or jsonData)")


def _class_of(value: Any, classes: Sequence[str]) -> str:
    if isinstance(value, str):
        if value in classes:
            return value
        raise FeedbackError(f"unknown class {value!r} in feedback (classes: {list(classes)})")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise FeedbackError(f"feedback truth {value!r} is neither a class name nor an index")
    index = int(value)
    if not 0 <= index < len(classes):
        raise FeedbackError(f"class index {index} is out of range (0..{len(classes) - 1})")
    return classes[index]


def truth_labels(values: Any, classes: Sequence[str]) -> list[str]:
    """Class names of a truth payload: names, indices, or one-hot/probability rows."""
    if not isinstance(values, list):
        values = [values]
    labels = []
    for row in values:
        if (
            isinstance(row, list)
            and len(row) == len(classes)
            and len(classes) > 1
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        ):
            labels.append(classes[int(np.argmax(row))])
        elif isinstance(row, list) and len(row) == 1:
            labels.append(_class_of(row[0], classes))
        elif isinstance(row, list):
            raise FeedbackError(
                f"feedback truth row {row!r} is not a class, an index or a one-hot row of "
                f"{len(classes)} values"
            )
        else:
            labels.append(_class_of(row, classes))
    return labels


def parse_seldon_feedback(message: Any, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Feedback rows from a Seldon ``Feedback`` (protobuf or its JSON dict): truth row ``i``
    is the true class of item ``i`` of the request."""
    feedback = _as_dict(message)
    request_id = feedback_request_id(feedback)
    labels = truth_labels(_truth_values(feedback.get("truth") or {}), list(classes))
    if not labels:
        raise FeedbackError("feedback truth is empty")
    return [
        {"request_id": request_id, "item_index": index, "truth": label, "source": SOURCE_SELDON}
        for index, label in enumerate(labels)
    ]


def store_seldon_feedback(store: FeedbackStore, message: Any, classes: Sequence[str]) -> int:
    """Parse a Seldon ``Feedback`` and store its labels; returns how many were stored."""
    return store.write(parse_seldon_feedback(message, classes))


# -- live accuracy ---------------------------------------------------------------------------


@dataclass
class Accuracy:
    """Live accuracy of one version from labelled predictions."""

    labels: int = 0
    correct: int = 0
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labels if self.labels else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "correct": self.correct,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 6),
            "per_class": self.per_class,
        }


def live_accuracy(
    engine: Engine,
    *,
    model: str,
    version: str,
    since: datetime,
    until: datetime | None = None,
) -> Accuracy:
    """Join feedback to the version's predictions scored in the window; latest label wins."""
    fb, sc = scoring_feedback.c, scoring_records.c
    query = (
        select(fb.request_id, fb.item_index, fb.truth, sc.predicted)
        .select_from(
            scoring_feedback.join(
                scoring_records,
                and_(sc.request_id == fb.request_id, sc.item_index == fb.item_index),
            )
        )
        .where(
            sc.model == model, sc.version == str(version), sc.status == "ok", sc.ts >= as_utc(since)
        )
        .order_by(fb.ts, fb.id)
    )
    if until is not None:
        query = query.where(sc.ts < as_utc(until))
    latest: dict[tuple[str, int], tuple[str, str | None]] = {}
    with engine.connect() as conn:
        for request_id, item_index, truth, predicted in conn.execute(query):
            latest[(request_id, item_index)] = (truth, predicted)
    result = Accuracy()
    for truth, predicted in latest.values():
        result.labels += 1
        hit = int(truth == predicted)
        result.correct += hit
        entry = result.per_class.setdefault(truth, {"labels": 0, "correct": 0})
        entry["labels"] += 1
        entry["correct"] += hit
    return result
