"""The model registry: one interface; a local backend (SQLite + files), Determined's and an
MLflow server's (GitLab's model registry).

Example::

    registry = open_registry(settings)
    registry.create_model("classifier")
    version = registry.register_version("classifier", Checkpoint(uuid, path), {"lineage": ...})
    registry.add_metadata("classifier", version.version, {"test": {"accuracy": 0.93}})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cdl_gitlab.registry.base import (
    Checkpoint,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    in_production,
    merge_metadata,
)

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.registry.determined_backend import DeterminedRegistry
    from cdl_gitlab.registry.local_backend import LocalRegistry

# The backends are imported on first use (PEP 562): the local one imports SQLAlchemy, which
# commands that only read the registry's base types (the cdl CLI at start-up) do not need.
_BACKENDS = {
    "DeterminedRegistry": "cdl_gitlab.registry.determined_backend",
    "LocalRegistry": "cdl_gitlab.registry.local_backend",
}


def __getattr__(name: str) -> Any:
    if name in _BACKENDS:
        return getattr(importlib.import_module(_BACKENDS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from cdl_gitlab.registry.determined_backend import DeterminedRegistry

        return DeterminedRegistry(master=settings.determined_master)
    from cdl_gitlab.registry.local_backend import LocalRegistry

    return LocalRegistry(settings.state_dir / "registry")


def production_version(registry: ModelRegistry, name: str) -> ModelVersion | None:
    """The latest version whose metadata records a production deployment."""
    return next(
        (version for version in reversed(registry.list_versions(name)) if in_production(version)),
        None,
    )
