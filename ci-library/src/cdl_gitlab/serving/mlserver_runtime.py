"""The MLServer custom runtime: the packaged CDL artifact over the V2 / Open Inference Protocol.

``model-settings.json`` names :class:`CDLRuntime` as its ``implementation`` and the artifact
folder as ``parameters.uri``. :meth:`CDLRuntime.load` loads the same artifact as the Seldon
component (:func:`cdl_gitlab.deploy.loading.load_artifact`, checksums verified), and
:meth:`CDLRuntime.predict` applies the same checks (:mod:`cdl_gitlab.serving.validation`) and
writes the same scoring rows (:mod:`cdl_gitlab.scoring`).

Request (``POST /v2/models/<name>/infer``, or gRPC ``ModelInfer``): one input; a text model
takes ``datatype: BYTES`` with ``shape [n]`` (or ``[n, 1]``) and ``n`` strings (over gRPC,
``bytes_contents`` or raw input contents: UTF-8, decoded strictly, else ``BAD_ENCODING``), an
image model a numeric datatype with ``shape [n, H, W]`` (or ``[H, W]``, ``[n, H, W, 1]``) and
the pixel values (0..1 or 0..255), flat or nested. Response: ``outputs`` ``probabilities``
(FP64, ``[n, classes]``) and ``label`` (BYTES, ``[n]``); ``parameters`` hold ``request_id``
(what feedback names), ``classes``, ``model`` and ``version``. A bad request is a 4xx (over
gRPC: ``INVALID_ARGUMENT``) whose ``error`` starts with the reason (``NOT_TEXT: ...``); it is
stored as a rejected scoring row.

Feedback: ``POST /v2/models/<name>/feedback`` with ``{"request_id": ..., "truth": [...]}``
(class names, indices or one-hot rows, one per item), guarded by the same token rule as
Seldon's feedback (``serving.feedback_token_env``). The request guards in front of MLServer's
REST app (size, depth, encoding, V2 schema) and its gRPC services (size, protobuf, raw
contents) are :mod:`cdl_gitlab.serving.mlserver_guard` and
:mod:`cdl_gitlab.serving.mlserver_grpc`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    ResponseOutput,
)

from cdl_gitlab.deploy.artifact import ArtifactManifest
from cdl_gitlab.deploy.loading import Predictor
from cdl_gitlab.scoring import (
    SCORING_URL_ENV,
    ScoringStore,
    ScoringWriter,
    redact,
)
from cdl_gitlab.serving.common import limit
from cdl_gitlab.serving.limits import GuardLimits, decode_json
from cdl_gitlab.serving.mlserver_metrics import cdl_metrics
from cdl_gitlab.serving.mlserver_registry import RUNTIMES
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
    BAD_ENCODING,
    BAD_FEEDBACK,
    BAD_PAYLOAD,
    NOT_TEXT,
    WRONG_SHAPE,
    WRONG_TYPE,
    InvalidRequest,
    check_feedback_token,
    parse_images,
    parse_texts,
)

log = logging.getLogger(__name__)

PREDICT = "predict"
FEEDBACK = "feedback"
NOT_LOADED = "MODEL_NOT_LOADED"
MAX_ID_CHARS = 256  # a request's ``id``: MLServer sends it back as a header / gRPC metadata
TEXT_INPUT = "text"
IMAGE_INPUT = "image"
NUMERIC_TYPES = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)


def error_text(exc: InvalidRequest) -> str:
    """The ``error`` of a 4xx answer: the reason first, then what was wrong."""
    return f"{exc.reason}: {exc.message}"


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _text(index: int, value: Any) -> str:
    """A text item: a string (JSON), or UTF-8 bytes (gRPC ``bytes_contents`` and raw input
    contents arrive as ``bytes``), decoded strictly."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                BAD_ENCODING, f"value {index} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
    raise InvalidRequest(NOT_TEXT, f"value {index} is not a string (a text model)")


def request_items(request_input: RequestInput, task: str) -> Any:
    """The raw items of a V2 input for :func:`parse_texts` / :func:`parse_images`."""
    shape = list(request_input.shape)
    if any(size < 0 or size > 2**31 for size in shape):
        raise InvalidRequest(BAD_PAYLOAD, f"input shape {shape}: sizes must be 0..2**31")
    values = list(_leaves(request_input.data.root))
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count != len(values):
        raise InvalidRequest(
            WRONG_SHAPE, f"input shape {shape} holds {count} values, the data has {len(values)}"
        )
    datatype = str(getattr(request_input.datatype, "value", request_input.datatype))
    if task == "text":
        if datatype != "BYTES":
            raise InvalidRequest(
                NOT_TEXT, f"this is a text model: send datatype BYTES (strings), not {datatype}"
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidRequest(
                WRONG_SHAPE, f"expected a flat list of texts (shape [n]), got shape {shape}"
            )
        return [_text(index, value) for index, value in enumerate(values)]
    if datatype not in NUMERIC_TYPES:
        raise InvalidRequest(
            WRONG_TYPE, f"this is an image model: send a numeric datatype (FP32...), not {datatype}"
        )
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(
                WRONG_TYPE,
                f"value {index} is not a number; this is an image model: expected numbers",
            )
    return np.asarray(values, dtype=np.float64).reshape(shape)


class CDLRuntime(MLModel):
    """An MLServer runtime serving one CDL artifact (see the module docstring)."""

    async def load(self) -> bool:
        """Verify and load the artifact, warm the model up, start the scoring writer."""
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self.artifact_dir = Path(uri or os.environ.get("CDL_ARTIFACT_DIR", "/mnt/models"))
        manifest, predictor = await asyncio.to_thread(load_for_serving, self.artifact_dir)
        self.manifest: ArtifactManifest = manifest
        self.predictor: Predictor = predictor
        self.max_batch = limit(manifest, "max_batch")
        self.max_text_chars = limit(manifest, "max_text_chars")
        self.guard_limits = GuardLimits(
            max_bytes=limit(manifest, "max_request_bytes"),
            max_depth=limit(manifest, "max_json_depth"),
        )
        token_env = manifest.serving.get("feedback_token_env")
        self.feedback_token_env: str | None = str(token_env) if token_env else None
        self._summary = InputSummary.for_model(manifest, predictor)
        self._lock = threading.Lock()
        self._feedback: Any = None
        self._predict_items(warm_up_items(manifest))
        self.writer: ScoringWriter | None = None
        url = os.environ.get(SCORING_URL_ENV)
        if url:
            self.writer = ScoringWriter(
                lambda: ScoringStore(url), on_failure=self._count_scoring_failure
            )
            atexit.register(self.writer.close, 5.0)
            log.info("scoring data goes to %s", redact(url))
        else:
            log.warning("%s is not set: scoring data is not stored", SCORING_URL_ENV)
        self.inputs = [self._input_metadata()]
        self.outputs = [
            MetadataTensor(
                name="probabilities", datatype="FP64", shape=[-1, len(manifest.classes)]
            ),
            MetadataTensor(name="label", datatype="BYTES", shape=[-1]),
        ]
        RUNTIMES[self.name] = self
        log.info(
            "serving %s v%s (%s) from %s",
            manifest.name,
            manifest.version,
            manifest.format,
            self.artifact_dir,
        )
        return True

    async def unload(self) -> bool:
        RUNTIMES.pop(self.name, None)
        writer = getattr(self, "writer", None)
        if writer is not None:
            await asyncio.to_thread(writer.close, 5.0)
        return True

    def _input_metadata(self) -> MetadataTensor:
        if self.manifest.task == "text":
            return MetadataTensor(name=TEXT_INPUT, datatype="BYTES", shape=[-1])
        return MetadataTensor(
            name=IMAGE_INPUT, datatype="FP32", shape=[-1, *self.manifest.input_shape]
        )

    # -- inference ---------------------------------------------------------------------------

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Class probabilities and labels of the request's items (4xx for a bad request)."""
        started = time.perf_counter()
        try:
            items = self.parse(payload)
        except InvalidRequest as exc:
            self.record_rejection(PREDICT, exc, started)
            raise MLServerError(error_text(exc), exc.status) from None
        prediction = await asyncio.to_thread(self._predict_items, items)
        labels, probabilities = prediction.labels, prediction.probabilities
        latency_ms = (time.perf_counter() - started) * 1000.0
        request_id = uuid.uuid4().hex
        self._score(request_id, prediction, latency_ms)
        count = len(labels)
        metrics, tags = cdl_metrics(), self._tags()
        metrics.requests.labels(**tags).inc()
        metrics.items.labels(**tags).inc(count)
        metrics.latency.labels(**tags).observe(latency_ms / 1000.0)
        for label in labels:
            metrics.predicted.labels(**{"class": label}).inc()
        return InferenceResponse(
            model_name=self.name,
            model_version=str(self.manifest.version),
            parameters=Parameters(
                request_id=request_id,
                classes=list(self.manifest.classes),
                model=self.manifest.name,
                version=str(self.manifest.version),
            ),
            outputs=[
                ResponseOutput(
                    name="probabilities",
                    shape=[count, len(self.manifest.classes)],
                    datatype="FP64",
                    data=probabilities.ravel().tolist(),
                ),
                # bytes, as MLServer's StringCodec: gRPC needs them, REST writes them as text
                ResponseOutput(
                    name="label",
                    shape=[count],
                    datatype="BYTES",
                    data=[label.encode("utf-8") for label in labels],
                ),
            ],
        )

    def parse(self, payload: InferenceRequest) -> list[Any]:
        """The checked items of a request (:class:`InvalidRequest` if it is bad)."""
        if len(payload.inputs) != 1:
            raise InvalidRequest(BAD_PAYLOAD, f"send exactly one input, got {len(payload.inputs)}")
        try:
            values = request_items(payload.inputs[0], self.manifest.task)
        except (ValueError, TypeError, OverflowError) as exc:  # numpy on odd values: a 400
            raise InvalidRequest(BAD_PAYLOAD, f"the input cannot be read: {exc}") from None
        if self.manifest.task == "text":
            return parse_texts(values, self.max_batch, self.max_text_chars)
        return parse_images(values, self.manifest.input_shape, self.max_batch)

    def _predict_items(self, items: list[Any]) -> Prediction:
        return predict_items(self.predictor, self.manifest, items)

    # -- feedback ----------------------------------------------------------------------------

    def authorize(self, kind: str, authorization: str | None) -> None:
        """Feedback needs the token the artifact names (:func:`check_feedback_token`)."""
        if kind == FEEDBACK:
            check_feedback_token(self.feedback_token_env, authorization)

    @custom_handler(rest_path="/v2/models/{model_name}/feedback", rest_method="POST")
    async def feedback(self, request: Request, model_name: str) -> dict[str, Any]:
        """Store the true classes of a scored request: ``{"request_id", "truth"}``."""
        started = time.perf_counter()
        try:
            if model_name != self.name:
                raise InvalidRequest("NOT_FOUND", f"no model {model_name!r} is served", 404)
            self.authorize(FEEDBACK, request.headers.get("Authorization"))
            body = decode_json(await request.body(), self.guard_limits, "the feedback")
            stored = await asyncio.to_thread(self._store_feedback, body)
        except InvalidRequest as exc:
            self.record_rejection(FEEDBACK, exc, started)
            raise MLServerError(error_text(exc), exc.status) from None
        return {"model_name": self.name, "feedback_stored": stored}

    def _store_feedback(self, body: Any) -> int:
        from cdl_gitlab.monitor.errors import FeedbackError
        from cdl_gitlab.monitor.feedback import FeedbackStore, truth_labels

        if (
            not isinstance(body, dict)
            or not isinstance(body.get("request_id"), str)
            or not body["request_id"]
            or "truth" not in body
        ):
            raise InvalidRequest(
                BAD_FEEDBACK, 'send {"request_id": "<the prediction\'s>", "truth": [...]}'
            )
        url = os.environ.get(SCORING_URL_ENV)
        if not url:
            raise InvalidRequest(
                "NO_SCORING_STORE", f"feedback needs the scoring store: {SCORING_URL_ENV}", 503
            )
        try:
            labels = truth_labels(body["truth"], list(self.manifest.classes))
            if not labels:
                raise FeedbackError("feedback truth is empty")
            with self._lock:
                if self._feedback is None:
                    self._feedback = FeedbackStore(url)
            rows = [
                {"request_id": body["request_id"], "item_index": i, "truth": label, "source": "v2"}
                for i, label in enumerate(labels)
            ]
            return self._feedback.write(rows)
        except FeedbackError as exc:
            raise InvalidRequest(BAD_FEEDBACK, str(exc)) from None

    # -- scoring -----------------------------------------------------------------------------

    def record_rejection(
        self, kind: str, exc: InvalidRequest, started: float | None = None
    ) -> None:
        """Count one refused request and store it as a rejected scoring row (never raises)."""
        log.info("rejected %s request: %s: %s", kind, exc.reason, exc.message)
        cdl_metrics().rejected.labels(reason=exc.reason).inc()
        if self.writer is None:
            return
        error = error_text(exc) if kind != FEEDBACK else f"{exc.reason}: feedback: {exc.message}"
        latency = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        self.writer.submit([rejected_record(self.manifest, error, latency)])

    def _tags(self) -> dict[str, str]:
        return {"model": self.manifest.name, "version": str(self.manifest.version)}

    def _count_scoring_failure(self, count: int) -> None:
        cdl_metrics().scoring_failures.labels(**self._tags()).inc(count)

    def _score(self, request_id: str, prediction: Prediction, latency_ms: float) -> None:
        if self.writer is not None:
            submit_ok_records(
                self.writer, prediction, self.manifest, request_id, latency_ms, self._summary
            )
