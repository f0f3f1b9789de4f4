"""Reference statistics of a model version: what monitoring compares live Scoring Data with.

Computed when a version is packaged, from the held-out items and the model's predictions on
them, and stored twice: as ``reference.json`` in the artifact and under the registry metadata
key ``monitoring.reference`` (the dict itself, so the report finds it on either profile
without the artifact). :func:`find_reference` looks in this order: an explicit file, the
registry metadata (a dict, or a string naming a file), the packaged artifact of the version.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdl_gitlab.features.input_stats import image_stats, text_stats, vocabulary_set
from cdl_gitlab.features.text import as_text
from cdl_gitlab.fsutil import atomic_write_json
from cdl_gitlab.monitor.errors import MonitorError
from cdl_gitlab.monitor.stats import rounded, summarize

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

SCHEMA = 1
REFERENCE_FILE = "reference.json"
METADATA_KEY = ("monitoring", "reference")
SAMPLE_SIZE = 1000
TOP_K_STEMS = 100
PIXEL_BINS = 20

FEATURES: dict[str, dict[str, tuple[str, ...]]] = {
    "text": {"n_chars": ("n_chars", "chars"), "n_tokens": ("n_tokens",), "oov_rate": ("oov_rate",)},
    "image": {"pixel_mean": ("mean",), "pixel_std": ("std",)},
}
"""Per task: reference feature -> the ``input_stats`` keys that carry it (first found wins)."""


def _input_rows(task: str, items: Sequence[Any], features_state: Any) -> list[dict[str, Any]]:
    if task == "text":
        vocabulary = vocabulary_set(features_state)
        return [text_stats(as_text(item), vocabulary) for item in items]
    transform = getattr(features_state, "transform", None)
    decode = getattr(transform, "decode", None)
    return [image_stats(decode(item) if decode else item) for item in items]


def _stem_profile(rows: list[dict[str, Any]], top_k: int) -> dict[str, Any]:
    """In how many documents each stem is among the document's top stems (top ``top_k``)."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(row["top_stems"].keys())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:top_k]
    return {
        "stems": [stem for stem, _ in kept],
        "counts": [count for _, count in kept],
        "other": int(sum(count for _, count in ranked[top_k:])),
    }


def _pixel_histogram(items: Sequence[Any], features_state: Any, limit: int) -> dict[str, Any]:
    transform = getattr(features_state, "transform", None)
    decode = getattr(transform, "decode", None)
    edges = np.linspace(0.0, 1.0, PIXEL_BINS + 1)
    counts = np.zeros(PIXEL_BINS, dtype=np.int64)
    for item in list(items)[:limit]:
        pixels = np.asarray(decode(item) if decode else item, dtype=np.float32)
        if pixels.size and pixels.max() > 1.0:
            pixels = pixels / 255.0
        counts += np.histogram(np.clip(pixels, 0.0, 1.0), bins=edges)[0]
    total = counts.sum()
    return {
        "edges": rounded(edges.tolist()),
        "density": rounded((counts / total).tolist() if total else counts.tolist()),
    }


def compute_reference(
    task: str,
    items: Sequence[Any],
    predictions: Any,
    features_state: Any,
    *,
    labels: Sequence[str] | None = None,
    sample_size: int = SAMPLE_SIZE,
    top_k: int = TOP_K_STEMS,
    seed: int = 0,
) -> dict[str, Any]:
    """JSON-serialisable reference statistics of ``items`` and the model's ``predictions``.

    ``items``: raw inputs as served (text str/bytes; image PNG bytes or pixel arrays).
    ``predictions``: class probabilities, shape ``(len(items), n_classes)``, columns in the
    order of ``features_state.classes``. ``features_state``: the checkpoint's
    :class:`~cdl_gitlab.features.state.FeatureState` (vocabulary, image decoder, classes).
    ``labels``: true class names of ``items``, to record the reference accuracy.
    """
    if task not in FEATURES:
        raise MonitorError(f"unknown task {task!r} (text or image)")
    probabilities = np.asarray(predictions, dtype=np.float64)
    classes = [str(name) for name in features_state.classes]
    if len(items) == 0:
        raise MonitorError("reference statistics need at least one item")
    if probabilities.shape != (len(items), len(classes)):
        raise MonitorError(
            f"predictions have shape {probabilities.shape}, expected "
            f"({len(items)}, {len(classes)}) (one probability per class and item)"
        )
    rows = _input_rows(task, items, features_state)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(items), size=min(len(items), sample_size), replace=False))
    features = {}
    for feature, keys in FEATURES[task].items():
        values = np.array([float(row[keys[0]]) for row in rows], dtype=np.float64)
        features[feature] = summarize(values, values[pick])
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    counts = np.bincount(predicted, minlength=len(classes))
    reference: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "classes": classes,
        "n_items": len(items),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": features,
        "predictions": {"counts": {name: int(n) for name, n in zip(classes, counts, strict=True)}},
        "confidence": summarize(confidence, confidence[pick]),
        "accuracy": None,
    }
    if labels is not None:
        truth = np.array([str(label) for label in labels])
        reference["accuracy"] = round(float(np.mean(truth == np.array(classes)[predicted])), 6)
    if task == "text":
        reference["stem_profile"] = _stem_profile(rows, top_k)
    else:
        reference["pixel_histogram"] = _pixel_histogram(items, features_state, sample_size)
    return json.loads(json.dumps(reference, allow_nan=False))


def check_reference(reference: Any, source: str) -> dict[str, Any]:
    """``reference`` if it looks like reference statistics, else MonitorError naming ``source``."""
    if not isinstance(reference, dict) or reference.get("schema") != SCHEMA:
        raise MonitorError(f"{source}: not CDL reference statistics (schema {SCHEMA})")
    for key in ("task", "classes", "features", "predictions", "confidence"):
        if key not in reference:
            raise MonitorError(f"{source}: reference statistics lack {key!r}")
    return reference


def save_reference(path: str | Path, reference: dict[str, Any]) -> Path:
    """Write ``reference`` atomically as JSON."""
    return atomic_write_json(path, check_reference(reference, str(path)))


def load_reference(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MonitorError(f"{path}: no such reference file") from None
    except (OSError, ValueError) as exc:
        raise MonitorError(f"{path}: unreadable reference statistics: {exc}") from exc
    return check_reference(data, str(path))


def attach_reference(registry: Any, name: str, version: int, reference: dict[str, Any]) -> None:
    """Store ``reference`` as the version's ``monitoring.reference`` metadata (replacing it)."""
    registry.add_metadata(name, version, {"monitoring": {"reference": reference}}, overwrite=True)


def artifact_reference_path(settings: Settings, name: str, version: int) -> Path:
    """``reference.json`` of the version's packaged artifact under the state folder."""
    return settings.state_dir / "artifacts" / f"{name}-v{version}" / REFERENCE_FILE


def find_reference(
    settings: Settings,
    name: str,
    version: int,
    metadata: dict[str, Any] | None,
    explicit: Path | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """``(reference, where it came from)``, or ``(None, why there is none)``."""
    if explicit is not None:
        return load_reference(explicit), str(explicit)
    stored = (metadata or {}).get(METADATA_KEY[0], {})
    stored = stored.get(METADATA_KEY[1]) if isinstance(stored, dict) else None
    if isinstance(stored, dict):
        return check_reference(stored, "registry metadata monitoring.reference"), (
            f"registry metadata monitoring.reference of {name} v{version}"
        )
    if isinstance(stored, str) and stored:
        return load_reference(settings.path(stored)), stored
    local = artifact_reference_path(settings, name, version)
    if local.is_file():
        return load_reference(local), str(local)
    return None, (
        f"no reference statistics for {name} v{version}: neither registry metadata "
        f"monitoring.reference nor {local} (re-package the version with `cdl deploy package`, "
        "or pass --reference FILE)"
    )


def reference_for_package(
    settings: Settings, checkpoint_dir: Path, predictor: Any, split: str = "test"
) -> dict[str, Any] | None:
    """Reference statistics of a version being packaged: the held-out ``split`` (the model
    never trained on it, so its confidence there is what live traffic should show), predicted
    by ``predictor`` (anything with ``predict_proba``, compressed formats included).

    None, with a warning, when the split cannot be read (no data at the packaging site): the
    report then says that drift checks were skipped for want of a reference.
    """
    import logging

    from cdl_gitlab.data.dataset import load_split
    from cdl_gitlab.errors import CDLError
    from cdl_gitlab.features.state import FeatureState

    log = logging.getLogger(__name__)
    try:
        loaded = load_split(settings, split)
    except (CDLError, OSError) as exc:
        log.warning(
            "no reference statistics for monitoring: cannot read the %s split: %s", split, exc
        )
        return None
    if not loaded.items:
        log.warning("no reference statistics for monitoring: the %s split has no items", split)
        return None
    contents = [content for _path, _label, content in loaded.items]
    labels = [label for _path, label, _content in loaded.items]
    probabilities = np.asarray(predictor.predict_proba(contents), dtype=np.float64)
    reference = compute_reference(
        settings.config.model.task,
        contents,
        probabilities,
        FeatureState.load(checkpoint_dir),
        labels=labels,
    )
    version = getattr(loaded, "version", None)
    reference["source"] = {
        "split": split,
        **{key: getattr(version, key, None) for key in ("repo", "branch", "commit")},
    }
    return reference
