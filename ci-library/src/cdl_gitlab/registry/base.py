"""The model registry's data types, its protocol and the metadata merge rule."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cdl_gitlab.errors import CDLError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(CDLError):
    """A registry operation failed: missing model/version, metadata conflict, backend error."""


@dataclass(frozen=True)
class Checkpoint:
    """A trained checkpoint: its id and, on the local profile, the folder with its files."""

    uuid: str
    path: Path | None = None


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    model: str
    version: int
    checkpoint_uuid: str
    created: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """The registry's own copy of the checkpoint files (local profile); None on Determined."""


@runtime_checkable
class ModelRegistry(Protocol):
    """The operations both backends (local, Determined) provide."""

    stores_files: bool
    """True when ``register_version`` keeps a copy of the checkpoint's files (local); False
    when it can only reference a checkpoint the backend already stores (Determined)."""

    def create_model(self, name: str, description: str = "", labels: Sequence[str] = ()) -> None:
        """Create the model; does nothing if it exists."""

    def list_models(self) -> list[str]:
        """Names of all models, sorted."""

    def register_version(
        self, name: str, checkpoint: Checkpoint, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        """Register ``checkpoint`` as the next version of ``name`` (created if missing)."""

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, ascending."""

    def get_version(self, name: str, version: int | None = None) -> ModelVersion:
        """A version of ``name``; ``None`` means the latest."""

    def add_metadata(
        self,
        name: str,
        version: int,
        metadata: Mapping[str, Any],
        *,
        overwrite: bool = False,
    ) -> ModelVersion:
        """Deep-merge ``metadata`` into the version's metadata (see :func:`merge_metadata`)."""

    def download(self, name: str, version: int | None = None, dest: Path | None = None) -> Path:
        """Copy the version's checkpoint files into ``dest`` and return it."""


def check_model_name(name: str) -> str:
    """``name`` if it is a valid model name (also a safe folder name), else RegistryError."""
    if not MODEL_NAME.match(name):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def checkpoint_folder(checkpoint: Checkpoint, registry: str) -> Path:
    """The folder of ``checkpoint``'s files, which a registry that stores files needs."""
    if checkpoint.path is None or not Path(checkpoint.path).is_dir():
        raise RegistryError(
            f"checkpoint {checkpoint.uuid}: the {registry} registry needs the checkpoint folder "
            f"(got {checkpoint.path})"
        )
    return Path(checkpoint.path)


def download_target(name: str, version: int, dest: Path | None) -> Path:
    """Where ``download`` puts ``name`` v``version``: ``dest`` (default
    ``./checkpoints/<name>-v<version>``), which must not exist or be empty; an empty folder
    is removed so the download can be renamed into place."""
    target = Path(dest) if dest else Path.cwd() / "checkpoints" / f"{name}-v{version}"
    if target.exists() and any(target.iterdir()):
        raise RegistryError(f"cannot download {name} v{version}: {target} is not empty")
    if target.exists():
        target.rmdir()
    return target


def ensure_json(metadata: Mapping[str, Any], what: str = "metadata") -> dict[str, Any]:
    """A deep, JSON-compatible copy of ``metadata`` (RegistryError if it is not JSON)."""
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} must be JSON-serialisable (no NaN): {exc}") from exc


def merge_metadata(
    current: Mapping[str, Any], update: Mapping[str, Any], *, overwrite: bool = False
) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``current``.

    Mappings merge key by key. A key whose value is already set to a *different* value
    raises RegistryError naming the key path (``test.accuracy``), unless ``overwrite``.
    """
    merged = copy.deepcopy(dict(current))
    _merge_into(merged, update, (), overwrite)
    return merged


def _merge_into(
    target: dict[str, Any], update: Mapping[str, Any], prefix: tuple[str, ...], overwrite: bool
) -> None:
    for key, value in update.items():
        path = (*prefix, str(key))
        if key not in target:
            target[key] = copy.deepcopy(value)
        elif isinstance(target[key], dict) and isinstance(value, Mapping):
            _merge_into(target[key], value, path, overwrite)
        elif target[key] != value:
            if not overwrite:
                raise RegistryError(
                    f"metadata key {'.'.join(path)} is already {json.dumps(target[key])}, "
                    f"not {json.dumps(value)}: refusing to overwrite it (use overwrite)"
                )
            target[key] = copy.deepcopy(value)


def version_label(name: str, version: int | None) -> str:
    return f"{name} v{version}" if version is not None else f"{name} (latest)"


def in_production(version: ModelVersion) -> bool:
    """Whether ``version``'s metadata records a production deployment."""
    deployments = version.metadata.get("deployments")
    return isinstance(deployments, dict) and bool(deployments.get("production"))
