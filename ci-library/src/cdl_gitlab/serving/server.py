"""The Seldon Core v1 model component the rendered ``deployment/<ModelClass>.py`` subclasses.

The server process builds the component (``__init__``: reads ``model.json`` only, cheap) and
asks for its metadata; every worker then calls :meth:`load` (verify checksums, load the
predictor, start the scoring writer). Every HTTP request passes the guard first
(:mod:`cdl_gitlab.serving.guard`, the ``model_error_handler`` blueprint Seldon registers):
size and nesting depth bounded before decoding, JSON types checked, a 4xx with a reason and a
rejected scoring row for anything bad. :meth:`predict` then checks shapes, counts and values
(400 the same way) before the model runs.

Custom metrics (Prometheus, on the metrics port): ``cdl_prediction_requests`` /
``cdl_prediction_items`` (COUNTER), ``cdl_prediction_latency`` (TIMER, ms),
``cdl_predicted_class{class}`` (COUNTER), and, as they occur,
``cdl_rejected_requests{reason}`` and ``cdl_scoring_failures`` (COUNTER). Behind Seldon's
REST app they go straight to its (buffered) metrics store, see
:mod:`cdl_gitlab.serving.metrics`; elsewhere they are returned as the prediction's runtime
metrics.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.metrics import PREDICT_METRIC_METHOD_TAG
from seldon_core.user_model import SeldonResponse

from cdl_gitlab.deploy.artifact import read_manifest
from cdl_gitlab.deploy.loading import Predictor
from cdl_gitlab.scoring import (
    SCORING_URL_ENV,
    ScoringStore,
    ScoringWriter,
    redact,
)
from cdl_gitlab.serving.common import (
    limit,
    resolve_artifact_dir,
)
from cdl_gitlab.serving.guard import FEEDBACK, make_guard
from cdl_gitlab.serving.limits import GuardLimits
from cdl_gitlab.serving.metrics import BufferedMetrics
from cdl_gitlab.serving.predictions import (
    InputSummary,
    Prediction,
    load_for_serving,
    predict_items,
    rejected_record,
    submit_ok_records,
    warm_up_items,
)
from cdl_gitlab.serving.validation import (
    InvalidRequest,
    check_feedback,
    check_feedback_token,
    check_message,
    parse_images,
    parse_texts,
)

log = logging.getLogger(__name__)

REQUESTS = "cdl_prediction_requests"
ITEMS = "cdl_prediction_items"
LATENCY = "cdl_prediction_latency"
PREDICTED = "cdl_predicted_class"
REJECTED = "cdl_rejected_requests"
SCORING_FAILURES = "cdl_scoring_failures"


class CDLModel:
    """A Seldon Core v1 MODEL serving one CDL artifact (see the module docstring)."""

    default_artifact_dir: Path | None = None
    """Set by the rendered wrapper: the ``artifact/`` folder next to it."""

    def __init__(self, artifact_dir: str | None = None, **_parameters: Any) -> None:
        self.artifact_dir = (
            Path(artifact_dir) if artifact_dir else resolve_artifact_dir(self.default_artifact_dir)
        )
        self.manifest = read_manifest(self.artifact_dir)
        self.max_batch = limit(self.manifest, "max_batch")
        self.max_text_chars = limit(self.manifest, "max_text_chars")
        self.guard_limits = GuardLimits(
            max_bytes=limit(self.manifest, "max_request_bytes"),
            max_depth=limit(self.manifest, "max_json_depth"),
        )
        token_env = self.manifest.serving.get("feedback_token_env")
        self.feedback_token_env: str | None = str(token_env) if token_env else None
        self.model_error_handler = make_guard(self)
        """Seldon registers this blueprint: every request is checked before it is decoded."""
        self.predictor: Predictor | None = None
        self.writer: ScoringWriter | None = None
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._tags = {"model": self.manifest.name, "version": str(self.manifest.version)}
        self._summary = InputSummary(limit(self.manifest, "scoring_text_chars"))
        self._feedback: Any = None
        self._metrics_sink: BufferedMetrics | None = None

    # -- life cycle ------------------------------------------------------------------------

    def load(self) -> None:
        """Verify and load the artifact, warm the model up, start the scoring writer."""
        manifest, predictor = load_for_serving(self.artifact_dir)
        self.manifest = manifest
        self.predictor = predictor
        self._summary = InputSummary.for_model(manifest, predictor)
        self._predict_items(warm_up_items(manifest))
        url = os.environ.get(SCORING_URL_ENV)
        if url:
            self.writer = ScoringWriter(
                lambda: ScoringStore(url), on_failure=self._count_scoring_failure
            )
            atexit.register(self.writer.close, 5.0)  # flush on a graceful worker exit
            log.info("scoring data goes to %s", redact(url))
        else:
            log.warning("%s is not set: scoring data is not stored", SCORING_URL_ENV)
        log.info(
            "serving %s v%s (%s) from %s",
            manifest.name,
            manifest.version,
            manifest.format,
            self.artifact_dir,
        )

    # -- Seldon's interface ----------------------------------------------------------------

    def class_names(self) -> list[str]:
        return self.manifest.classes

    def init_metadata(self) -> dict[str, Any]:
        """Name, version, lineage summary and the input/output description."""
        manifest = self.manifest
        if manifest.task == "text":
            inputs = [{"messagetype": "ndarray", "schema": {"names": ["text"], "shape": [1]}}]
            inputs.append({"messagetype": "strData"})
        else:
            shape = list(manifest.input_shape)
            inputs = [{"messagetype": "ndarray", "schema": {"shape": shape}}]
            inputs.append({"messagetype": "binData"})
        custom = {
            "task": manifest.task,
            "format": manifest.format,
            "framework": str(manifest.data.get("framework", "")),
            "checksum": manifest.checksum,
            "checkpoint_uuid": str(manifest.data.get("checkpoint_uuid", "")),
            "max_batch": str(self.max_batch),
            **{key: str(value) for key, value in manifest.data.get("lineage_summary", {}).items()},
        }
        if manifest.data.get("source_version") is not None:
            custom["source_version"] = str(manifest.data["source_version"])
        return {
            "name": manifest.name,
            "versions": [str(manifest.version)],
            "platform": f"cdl-{manifest.data.get('framework', '')}",
            "inputs": inputs,
            "outputs": [
                {
                    "messagetype": "ndarray",
                    "schema": {"names": manifest.classes, "shape": [len(manifest.classes)]},
                }
            ],
            "custom": custom,
        }

    def health_status(self) -> dict[str, Any]:
        """Ready when the model is loaded; reports scoring-writer counts."""
        if self.predictor is None:
            raise SeldonMicroserviceException(
                "model not loaded yet", status_code=503, reason="MODEL_NOT_LOADED"
            )
        status: dict[str, Any] = {
            "status": "ok",
            "model": self.manifest.name,
            "version": self.manifest.version,
        }
        if self.writer is not None:
            status["scoring"] = {"written": self.writer.written, "failed": self.writer.failed}
        return status

    def send_feedback_raw(self, feedback: Any) -> Any:
        """Store the true classes of a scored request (Seldon's ``/api/v1.0/feedback``)."""
        from seldon_core.utils import json_to_seldon_message

        from cdl_gitlab.monitor.errors import FeedbackError
        from cdl_gitlab.monitor.feedback import FeedbackStore, store_seldon_feedback

        url = os.environ.get(SCORING_URL_ENV)
        if not url:
            raise SeldonMicroserviceException(
                f"feedback needs the scoring store: {SCORING_URL_ENV} is not set",
                status_code=503,
                reason="NO_SCORING_STORE",
            )
        try:
            with self._lock:
                if self._feedback is None:
                    self._feedback = FeedbackStore(url)
            stored = store_seldon_feedback(self._feedback, feedback, self.manifest.classes)
        except FeedbackError as exc:
            raise SeldonMicroserviceException(
                str(exc), status_code=400, reason="BAD_FEEDBACK"
            ) from None
        return json_to_seldon_message({"meta": {"tags": {"feedback_stored": stored}}})

    def authorize(self, kind: str, authorization: str | None) -> None:
        """Feedback needs the token the artifact names (:func:`check_feedback_token`)."""
        if kind == FEEDBACK:
            check_feedback_token(self.feedback_token_env, authorization)

    def check_request(self, kind: str, payload: Any) -> None:
        """The guard's check of a decoded request (see :mod:`cdl_gitlab.serving.guard`)."""
        if kind == FEEDBACK:
            check_feedback(payload)
        else:
            check_message(payload, self.manifest.task)

    def record_rejection(self, kind: str, exc: InvalidRequest) -> None:
        """Count a request the guard refused and store it as a rejected scoring row."""
        self._reject(exc, time.perf_counter(), kind)

    def predict(
        self, X: Any, features_names: Iterable[str] | None = None, meta: dict | None = None
    ) -> SeldonResponse:
        """Class probabilities (one row per item, columns = :meth:`class_names`)."""
        started = time.perf_counter()
        try:
            items = self._parse(X)
        except InvalidRequest as exc:
            raise self._reject(exc, started) from None
        try:
            prediction = self._predict_items(items)
        except TypeError as exc:  # Seldon retries predict() on TypeError: never let one out
            raise RuntimeError(f"prediction failed: {exc}") from exc
        labels = prediction.labels
        latency_ms = (time.perf_counter() - started) * 1000.0
        request_id = uuid.uuid4().hex
        self._score(request_id, prediction, latency_ms)
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        metrics = [
            {"type": "COUNTER", "key": REQUESTS, "value": 1, "tags": dict(self._tags)},
            {"type": "COUNTER", "key": ITEMS, "value": len(items), "tags": dict(self._tags)},
            {"type": "TIMER", "key": LATENCY, "value": latency_ms, "tags": dict(self._tags)},
            *(
                {"type": "COUNTER", "key": PREDICTED, "value": n, "tags": {"class": label}}
                for label, n in counts.items()
            ),
        ]
        tags = {"request_id": request_id, "predictions": labels, **self._tags}
        metrics += self.drain()
        if self._metrics_sink is not None:  # straight to the store, not through the response
            self._metrics_sink.update(metrics, PREDICT_METRIC_METHOD_TAG)
            metrics = []
        return SeldonResponse(data=prediction.probabilities, tags=tags, metrics=metrics)

    def attach_metrics(self, sink: BufferedMetrics) -> None:
        """Called by the guard in each worker: metrics go to ``sink`` (Seldon's store,
        buffered) directly, so responses do not carry them and Seldon need not check them."""
        self._metrics_sink = sink

    def drain(self) -> list[dict[str, Any]]:
        """Counters recorded outside a successful prediction (rejections, scoring failures).

        Seldon's metrics store costs inter-process calls per update, so instead of a
        ``metrics()`` method (one more update per request) they ride along with the next
        prediction's runtime metrics.
        """
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    # -- internals -------------------------------------------------------------------------

    def _parse(self, X: Any) -> list[Any]:
        if self.manifest.task == "text":
            return list(parse_texts(X, self.max_batch, self.max_text_chars))
        return parse_images(X, self.manifest.input_shape, self.max_batch)

    def _predict_items(self, items: list[Any]) -> Prediction:
        if self.predictor is None:
            raise SeldonMicroserviceException(
                "model not loaded yet", status_code=503, reason="MODEL_NOT_LOADED"
            )
        return predict_items(self.predictor, self.manifest, items)

    def _reject(
        self, exc: InvalidRequest, started: float, kind: str = "predict"
    ) -> SeldonMicroserviceException:
        log.info("rejected %s request: %s: %s", kind, exc.reason, exc.message)
        self._add_metrics(
            [{"type": "COUNTER", "key": REJECTED, "value": 1, "tags": {"reason": exc.reason}}]
        )
        if self.writer is not None:
            error = f"{exc.reason}: {exc.message}"
            if kind == FEEDBACK:
                error = f"{exc.reason}: feedback: {exc.message}"
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.writer.submit([rejected_record(self.manifest, error, latency_ms)])
        return SeldonMicroserviceException(exc.message, status_code=exc.status, reason=exc.reason)

    def _score(self, request_id: str, prediction: Prediction, latency_ms: float) -> None:
        if self.writer is not None:
            submit_ok_records(
                self.writer, prediction, self.manifest, request_id, latency_ms, self._summary
            )

    def _count_scoring_failure(self, count: int) -> None:
        self._add_metrics(
            [{"type": "COUNTER", "key": SCORING_FAILURES, "value": count, "tags": dict(self._tags)}]
        )

    def _add_metrics(self, metrics: list[dict[str, Any]]) -> None:
        if self._metrics_sink is not None:
            self._metrics_sink.update(metrics, PREDICT_METRIC_METHOD_TAG)
            return
        with self._lock:
            self._pending.extend(metrics)
