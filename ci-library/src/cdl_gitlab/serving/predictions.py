"""One prediction and its scoring records, the same for every model-server engine.

Both engines (the Seldon component, the MLServer runtime) call :func:`predict_items` on the
checked items of a request and hand :func:`ok_records` to the scoring writer, which builds the
records in its own thread. A text request is tokenised once: the stems that make the model's
input are kept and reused for the item's input statistics.
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.deploy.artifact import ArtifactManifest
from cdl_gitlab.deploy.loading import Predictor, load_artifact
from cdl_gitlab.features.input_stats import vocabulary_set
from cdl_gitlab.features.text import stems
from cdl_gitlab.model.predictor import serving_threads
from cdl_gitlab.scoring import STATUS_OK, STATUS_REJECTED, ScoringRecord, ScoringWriter
from cdl_gitlab.serving.common import limit, summarize_image, summarize_text

log = logging.getLogger(__name__)


def load_for_serving(artifact_dir: Path) -> tuple[ArtifactManifest, Predictor]:
    """The artifact's manifest and predictor, checksums verified, with the fast forward pass
    of :mod:`cdl_gitlab.model.fast_inference` where it applies, one PyTorch thread, and
    everything loaded so far kept out of the garbage collector's way (``gc.freeze``)."""
    manifest, predictor = load_artifact(artifact_dir, verify=True)
    if predictor.framework == "pytorch":
        import torch

        torch.set_num_threads(serving_threads())
    if predictor.use_fast_forward():
        log.info("serving with the fast forward pass (checked against the model)")
    # The libraries and the model are loaded for good: keep the collector from walking their
    # objects again and again (a full collection of them stalls every request for a while).
    gc.collect()
    gc.freeze()
    return manifest, predictor


@dataclass(frozen=True)
class Prediction:
    """The model's answer for the items of one request."""

    items: list[Any]
    labels: list[str]
    probabilities: np.ndarray
    """``(len(items), n_classes)`` float64, columns in the manifest's class order."""
    stem_lists: list[list[str]] | None = None
    """Text models: each item's stems, as the model saw them."""


def predict_items(predictor: Predictor, manifest: ArtifactManifest, items: list[Any]) -> Prediction:
    """Run the model on checked ``items`` (texts, or image arrays)."""
    stem_lists = None
    if manifest.task == "text":
        stem_lists = [stems(item) for item in items]
        probabilities = predictor.predict_proba_stems(stem_lists)
    else:
        probabilities = predictor.predict_proba(items)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = manifest.classes
    labels = [classes[int(i)] for i in probabilities.argmax(axis=1)]
    return Prediction(items, labels, probabilities, stem_lists)


def warm_up_items(manifest: ArtifactManifest) -> list[Any]:
    """One request's items to run once after load (a short text, or an all-zero image), so
    that the first real request does not pay for the first forward pass."""
    if manifest.task == "text":
        return ["warm up"]
    return [np.zeros(manifest.input_shape, dtype=np.float32)]


@dataclass(frozen=True)
class InputSummary:
    """How a served model summarises an item in its scoring data."""

    text_chars: int
    """Leading characters of a text kept (``scoring_text_chars``)."""
    vocabulary: Container[str] = frozenset()
    """A text model's stems (out-of-vocabulary rate, top stems)."""

    @classmethod
    def for_model(cls, manifest: ArtifactManifest, predictor: Predictor) -> InputSummary:
        """The summary the artifact's limits and (text) vocabulary call for."""
        vocabulary: frozenset[str] = frozenset()
        if manifest.task == "text":
            vocabulary = vocabulary_set(getattr(predictor, "features", ()))
        return cls(limit(manifest, "scoring_text_chars"), vocabulary)

    def of(self, task: str, item: Any, tokens: list[str] | None = None) -> dict[str, Any]:
        if task == "text":
            return summarize_text(item, self.text_chars, self.vocabulary, tokens)
        return summarize_image(item)


def ok_records(
    prediction: Prediction,
    manifest: ArtifactManifest,
    request_id: str,
    latency_ms: float,
    summary: InputSummary,
    ts: datetime,
) -> list[ScoringRecord]:
    """One scoring record per item: label, probabilities, hash and input statistics."""
    classes = manifest.classes
    version = str(manifest.version)
    stem_lists = prediction.stem_lists or [None] * len(prediction.items)
    records = []
    for index, (item, label, row, tokens) in enumerate(
        zip(prediction.items, prediction.labels, prediction.probabilities, stem_lists, strict=True)
    ):
        records.append(
            ScoringRecord(
                request_id=request_id,
                item_index=index,
                ts=ts,
                model=manifest.name,
                version=version,
                status=STATUS_OK,
                predicted=label,
                probabilities=dict(zip(classes, row.tolist(), strict=True)),
                latency_ms=latency_ms,
                **summary.of(manifest.task, item, tokens),
            )
        )
    return records


def submit_ok_records(
    writer: ScoringWriter,
    prediction: Prediction,
    manifest: ArtifactManifest,
    request_id: str,
    latency_ms: float,
    summary: InputSummary,
) -> None:
    """Queue :func:`ok_records` to be built in the writer's thread (off the request path);
    failures are counted by the writer, never raised."""
    now = datetime.now(UTC)
    build = partial(ok_records, prediction, manifest, request_id, latency_ms, summary, now)
    writer.submit_deferred(build, len(prediction.items))


def rejected_record(manifest: ArtifactManifest, error: str, latency_ms: float) -> ScoringRecord:
    """The scoring record of a refused request (``error``: reason and message)."""
    return ScoringRecord(
        request_id=uuid.uuid4().hex,
        model=manifest.name,
        version=str(manifest.version),
        status=STATUS_REJECTED,
        error=error[:2000],
        input_kind=manifest.task,
        latency_ms=latency_ms,
        ts=datetime.now(UTC),
    )
