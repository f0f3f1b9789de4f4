"""``cdl deploy select``: decide once which registered version the deploy jobs serve.

The version that passed the gates: the latest uncompressed version whose recorded test
accuracy (``metrics.test``, written by the evaluation) reaches the accuracy threshold, or
the compressed version made from it when one is registered and its compression gate passed.
The decision is written as a dotenv file the later jobs of the pipeline read, so every
deploy job of one pipeline serves the same version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.registry.base import ModelRegistry


class SelectionError(CDLError):
    """No registered version passed the gates."""


@dataclass(frozen=True)
class Selection:
    """The version to deploy and why."""

    model: str
    version: int
    variant: str
    """``compressed`` or ``native``."""
    native_version: int
    accuracy: float

    def dotenv(self) -> str:
        """The decision as a GitLab dotenv report (one KEY=value a line)."""
        return (
            f"CDL_DEPLOY_MODEL={self.model}\n"
            f"CDL_DEPLOY_VERSION={self.version}\n"
            f"CDL_DEPLOY_VARIANT={self.variant}\n"
            f"CDL_DEPLOY_NATIVE_VERSION={self.native_version}\n"
        )


def _test_accuracy(metadata: dict[str, Any]) -> float | None:
    value = ((metadata.get("metrics") or {}).get("test") or {}).get("accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def _compressed_from(metadata: dict[str, Any]) -> int | None:
    checkpoint = (metadata.get("lineage") or {}).get("checkpoint") or {}
    source = (checkpoint.get("compressed_from") or {}).get("version")
    return int(source) if isinstance(source, int) else None


def select_version(settings: Settings, registry: ModelRegistry) -> Selection:
    """The compressed version if its gate passed, else the native one that passed evaluation."""
    name = settings.config.model.name
    threshold = float(settings.config.training.accuracy_threshold)
    versions = registry.list_versions(name)
    if not versions:
        raise SelectionError(f"{name} has no registered version: train and evaluate first")
    gated = [
        found
        for found in versions
        if not found.metadata.get("compression")
        and (_test_accuracy(found.metadata) or 0.0) >= threshold
    ]
    if not gated:
        raise SelectionError(
            f"no version of {name} passed the accuracy gate (test accuracy >= {threshold} "
            "recorded by the evaluation): nothing to deploy"
        )
    native = gated[-1]
    compressed = [
        found
        for found in versions
        if (found.metadata.get("compression") or {}).get("passed") is True
        and _compressed_from(found.metadata) == native.version
    ]
    accuracy = _test_accuracy(native.metadata) or 0.0
    if compressed:
        chosen = compressed[-1]
        return Selection(name, chosen.version, "compressed", native.version, accuracy)
    return Selection(name, native.version, "native", native.version, accuracy)
