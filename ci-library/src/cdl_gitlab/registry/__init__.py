"""The model registry: one interface; a local backend (SQLite + files), Determined's and an
MLflow server's (GitLab's model registry).

Example::

    registry = open_registry(settings)
    registry.create_model("classifier")
    version = registry.register_version("classifier", Checkpoint(uuid, path), {"lineage": ...})
    registry.add_metadata("classifier", version.version, {"test": {"accuracy": 0.93}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.registry.base import (
    Checkpoint,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    in_production,
    merge_metadata,
)
from cdl_gitlab.registry.determined_backend import DeterminedRegistry
from cdl_gitlab.registry.local_backend import LocalRegistry

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

__all__ = [
    "Checkpoint",
    "DeterminedRegistry",
    "LocalRegistry",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "in_production",
    "merge_metadata",
    "open_registry",
    "production_version",
]


def open_registry(settings: Settings) -> ModelRegistry:
    """The configured registry: MLflow's (``registry.backend: mlflow``), else the profile's:
    local under ``<state_dir>/registry``, or Determined's."""
    if settings.registry_backend == "mlflow":
        from cdl_gitlab.registry.mlflow_backend import MlflowRegistry

        return MlflowRegistry()
    if settings.profile == "cluster":
        return DeterminedRegistry(master=settings.determined_master)
    return LocalRegistry(settings.state_dir / "registry")


def production_version(registry: ModelRegistry, name: str) -> ModelVersion | None:
    """The latest version whose metadata records a production deployment."""
    return next(
        (version for version in reversed(registry.list_versions(name)) if in_production(version)),
        None,
    )
