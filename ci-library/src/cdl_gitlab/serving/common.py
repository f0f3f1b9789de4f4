"""What every model-server engine shares: where the artifact is, the request limits, and the
per-item summaries (hash, monitoring's input statistics) stored with the scoring data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.deploy.artifact import ArtifactManifest
from cdl_gitlab.features.input_stats import image_stats, text_stats

ARTIFACT_ENV = "CDL_ARTIFACT_DIR"
MOUNTED_ARTIFACT = Path("/mnt/models")
DEFAULT_LIMITS = {
    "max_batch": 64,
    "max_text_chars": 100_000,
    "scoring_text_chars": 200,
    "max_request_bytes": 8_000_000,
    "max_json_depth": 32,
}


def resolve_artifact_dir(default: Path | None) -> Path:
    """``$CDL_ARTIFACT_DIR``, else ``/mnt/models`` if it holds a model, else ``default``."""
    explicit = os.environ.get(ARTIFACT_ENV)
    if explicit:
        return Path(explicit)
    if (MOUNTED_ARTIFACT / "model.json").is_file() or default is None:
        return MOUNTED_ARTIFACT
    return default


def limit(manifest: ArtifactManifest, name: str) -> int:
    value = os.environ.get(f"CDL_{name.upper()}")
    if value:
        return int(value)
    return int(manifest.serving.get(name, DEFAULT_LIMITS[name]))


def summarize_text(
    text: str, keep: int, vocabulary: Container[str], tokens: Sequence[str] | None = None
) -> dict[str, Any]:
    """Hash, leading characters and monitoring's input statistics of one text (``tokens``: its
    stems, if known)."""
    return {
        "input_kind": "text",
        "input_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "input_text": text[:keep],
        "input_stats": text_stats(text, vocabulary, tokens),
    }


def summarize_image(image: Any) -> dict[str, Any]:
    """Hash and monitoring's pixel statistics (0..1 scale) of one image array."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    return {
        "input_kind": "image",
        "input_hash": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "input_stats": image_stats(pixels),
    }
