"""``cdl deploy package``: export a registered model version into an artifact folder."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdl_gitlab.deploy.artifact import (
    CHECKPOINT_DIR,
    ArtifactError,
    ArtifactManifest,
    read_manifest,
    replace_directory,
    staging_dir,
    write_manifest,
)
from cdl_gitlab.deploy.loading import load_format, predict_labels
from cdl_gitlab.deploy.memory import METADATA_KEY as MEMORY_KEY
from cdl_gitlab.deploy.memory import MI, MemoryMeasurement
from cdl_gitlab.fsutil import atomic_write_json

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "artifacts"
SUMMARY_ITEMS = 40
SUMMARY_CHARS = 200


def default_artifact_dir(settings: Settings, name: str, version: int) -> Path:
    """Where ``cdl deploy serve`` keeps packaged versions: ``<state_dir>/artifacts/<name>-v<N>``."""
    return settings.state_dir / ARTIFACTS_DIR / f"{name}-v{version}"


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Scalar leaves of nested mappings as ``{"a.b": "value"}`` strings (lists as JSON-ish)."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: str(data)} if prefix else {}


def lineage_summary(lineage: dict[str, Any]) -> dict[str, str]:
    """A short, string-only view of the lineage for Seldon's metadata ``custom`` field."""
    flat = flatten(lineage)
    return {
        f"lineage.{key}": value[:SUMMARY_CHARS] for key, value in list(flat.items())[:SUMMARY_ITEMS]
    }


def sample_inputs(task: str, shape: tuple[int, ...]) -> list[Any]:
    """Inputs for a smoke prediction: one short text, or one blank image."""
    if task == "text":
        return ["cdl packaging check"]
    return [np.zeros(shape, dtype=np.float32)]


def input_spec(task: str, checkpoint_dir: Path) -> dict[str, Any]:
    """``{"kind": "text"}`` or ``{"kind": "image", "shape": [h, w]}`` from the feature state."""
    if task == "text":
        return {"kind": "text"}
    from cdl_gitlab.features.state import FeatureState

    try:
        state = FeatureState.load(checkpoint_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{checkpoint_dir}: cannot read the feature state: {exc}") from exc
    return {"kind": "image", "shape": list(state.transform.input_shape)}


def serving_limits(settings: Settings) -> dict[str, int | str]:
    """The ``serving`` block of ``model.json``: request limits, the feedback token's variable."""
    deployment = settings.config.deployment
    limits: dict[str, int | str] = {
        "max_batch": deployment.max_batch,
        "max_text_chars": deployment.max_text_chars,
        "scoring_text_chars": deployment.scoring_text_chars,
    }
    token_env = settings.config.serving.feedback_token_env
    if token_env:
        limits["feedback_token_env"] = token_env
    return limits


def build_artifact(
    folder: Path,
    *,
    name: str,
    version: int,
    fmt: str,
    task: str,
    framework: str,
    lineage: dict[str, Any],
    extra: dict[str, Any],
    serving: dict[str, int | str],
    reference: Callable[[Path, Any], dict[str, Any] | None] | None = None,
) -> ArtifactManifest:
    """Complete ``folder`` (which holds ``checkpoint/``): load, smoke-test, describe, hash.

    ``reference(checkpoint_dir, predictor)`` may return monitoring reference statistics,
    stored as ``reference.json`` (hashed with the rest).
    """
    checkpoint = folder / CHECKPOINT_DIR
    predictor = load_format(checkpoint, fmt)
    spec = input_spec(task, checkpoint)
    labels, probabilities = predict_labels(
        predictor, sample_inputs(task, tuple(spec.get("shape", ())))
    )
    if probabilities.shape != (1, len(predictor.classes)) or not np.isfinite(probabilities).all():
        raise ArtifactError(
            f"{name} v{version}: the smoke prediction returned {probabilities.shape} "
            f"non-finite or misshapen probabilities"
        )
    atomic_write_json(folder / "classes.json", list(predictor.classes))
    stats = reference(checkpoint, predictor) if reference else None
    if stats is not None:
        from cdl_gitlab.monitor.reference import REFERENCE_FILE, save_reference

        save_reference(folder / REFERENCE_FILE, stats)
    atomic_write_json(folder / "lineage.json", lineage)
    log.debug("smoke prediction of %s v%s: %s", name, version, labels)
    return write_manifest(
        folder,
        {
            "name": name,
            "version": version,
            "format": fmt,
            "task": task,
            "framework": framework,
            "classes": list(predictor.classes),
            "input": spec,
            "serving": serving,
            "lineage_summary": lineage_summary(lineage),
            **extra,
        },
    )


def package_version(
    settings: Settings,
    version: int | None = None,
    out: Path | None = None,
    measure: Callable[[Path], MemoryMeasurement] | None = None,
) -> tuple[Path, ArtifactManifest]:
    """Export ``version`` (default: the latest) of the project's model into ``out``.

    The folder is built beside ``out`` and renamed into place only when complete. With
    ``monitoring.enabled``, the test split's reference statistics go into the artifact
    (``reference.json``) and the registry (``monitoring.reference``). ``measure(folder)``
    (``cdl deploy package`` passes :func:`cdl_gitlab.serving.memory_probe.measure_artifact`)
    measures the finished artifact's serving memory, recorded in ``model.json`` and the
    registry (``serving_memory``), where ``cdl deploy manifest`` reads it for
    ``deployment.memory: auto``.
    """
    from cdl_gitlab.registry import open_registry

    name = settings.config.model.name
    registry = open_registry(settings)
    found = registry.get_version(name, version)
    target = Path(out) if out else default_artifact_dir(settings, name, found.version)
    metadata = dict(found.metadata)
    compression = metadata.get("compression") or {}
    captured: list[dict[str, Any]] = []
    staging = staging_dir(target)
    try:
        registry.download(name, found.version, staging / CHECKPOINT_DIR)
        manifest = build_artifact(
            staging,
            name=name,
            version=found.version,
            fmt=str(compression.get("format", "native")),
            task=settings.config.model.task,
            framework=settings.config.model.framework,
            lineage=metadata.get("lineage") or {},
            extra={
                "checkpoint_uuid": found.checkpoint_uuid,
                "registered": found.created.isoformat(),
                "source_version": compression.get("source_version"),
            },
            serving=serving_limits(settings),
            reference=_reference_hook(settings, captured),
        )
        if measure is not None:
            manifest = record_memory(staging, manifest, measure(staging))
            measured = MemoryMeasurement.from_dict(manifest.data[MEMORY_KEY])
            log.info(
                "serving memory of %s v%s: main process %.0f Mi, %.0f Mi private per worker",
                name,
                found.version,
                measured.base_rss / MI,
                measured.worker_private / MI,
            )
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if captured:
        from cdl_gitlab.monitor.reference import attach_reference

        attach_reference(registry, name, found.version, captured[0])
    if MEMORY_KEY in manifest.data:
        registry.add_metadata(
            name, found.version, {MEMORY_KEY: manifest.data[MEMORY_KEY]}, overwrite=True
        )
    log.info("packaged %s v%s into %s (%s)", name, found.version, target, manifest.checksum)
    return target, manifest


COMPUTED_FIELDS = ("schema", "files", "checksum", "packaged", "cdl_version")


def record_memory(
    folder: Path, manifest: ArtifactManifest, measured: MemoryMeasurement
) -> ArtifactManifest:
    """Rewrite ``folder``'s ``model.json`` with the serving memory measured for it."""
    fields = {k: v for k, v in manifest.data.items() if k not in COMPUTED_FIELDS}
    return write_manifest(folder, {**fields, MEMORY_KEY: measured.to_dict()})


def _reference_hook(
    settings: Settings, captured: list[dict[str, Any]]
) -> Callable[[Path, Any], dict[str, Any] | None] | None:
    """With monitoring on: reference statistics of the test split (kept in ``captured``)."""
    if not settings.config.monitoring.enabled:
        return None

    def hook(checkpoint: Path, predictor: Any) -> dict[str, Any] | None:
        from cdl_gitlab.monitor.reference import reference_for_package

        stats = reference_for_package(settings, checkpoint, predictor)
        if stats is not None:
            captured.append(stats)
        return stats

    return hook


def ensure_packaged(
    settings: Settings, version: int | None = None
) -> tuple[Path, ArtifactManifest]:
    """The cached artifact of ``version`` (default: latest) under the state folder, packaged
    if it is missing or fails its checksums."""
    from cdl_gitlab.registry import open_registry

    name = settings.config.model.name
    if version is None:
        version = open_registry(settings).get_version(name, None).version
    target = default_artifact_dir(settings, name, version)
    if target.is_dir():
        try:
            return target, read_manifest(target, verify=True)
        except ArtifactError as exc:
            log.warning("re-packaging: %s", exc)
    return package_version(settings, version)
