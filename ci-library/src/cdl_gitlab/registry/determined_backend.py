"""The cluster profile's model registry: Determined's, through the determined SDK.

Login uses ``DET_USER``/``DET_PASS`` from the environment when both are set (never printed),
else the SDK's own order (token cache, ``DET_USER_TOKEN``, default user). ``determined`` is
imported lazily: it belongs to the ``ml`` extra, not to the core install.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.fsutil import atomic_directory
from cdl_gitlab.registry.base import (
    Checkpoint,
    ModelVersion,
    RegistryError,
    check_model_name,
    download_target,
    ensure_json,
    merge_metadata,
)

if TYPE_CHECKING:
    from determined.common.api import bindings
    from determined.experimental.client import Determined


def _import_sdk() -> Any:
    try:
        from determined.experimental import client
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RegistryError(
            "the cluster profile needs the determined SDK: pip install 'cdl-gitlab[ml]'"
        ) from exc
    return client


@contextlib.contextmanager
def master_errors(master: str, action: str) -> Iterator[None]:
    """Turn the SDK's errors into one-line CDL errors that say what to do."""
    from determined.common.api import errors

    try:
        yield
    except errors.MasterNotFoundException as exc:
        raise RegistryError(
            f"{action}: cannot reach the Determined master at {master} "
            "(check DET_MASTER / cluster.determined_master and that the master runs)"
        ) from exc
    except (errors.UnauthenticatedException, errors.ForbiddenException) as exc:
        raise RegistryError(
            f"{action}: the Determined master at {master} refused the login or the request "
            "(set DET_USER and DET_PASS as masked CI/CD variables)"
        ) from exc
    except errors.NotFoundException as exc:
        raise RegistryError(f"{action}: not found on the Determined master ({exc})") from exc
    except errors.BadRequestException as exc:
        raise RegistryError(f"{action}: the Determined master answered: {exc}") from exc


def connect(master: str) -> Determined:
    """A logged-in SDK client for ``master`` (DET_USER/DET_PASS from the environment)."""
    if not master:
        raise RegistryError(
            "no Determined master configured: set DET_MASTER or cluster.determined_master "
            "in cdl.yaml"
        )
    client = _import_sdk()
    user, password = os.environ.get("DET_USER"), os.environ.get("DET_PASS")
    if not (user and password is not None):
        user = password = None
    with master_errors(master, "login"):
        return client.Determined(master=master, user=user, password=password)


def _to_version(raw: bindings.v1ModelVersion) -> ModelVersion:
    from determined.common import util

    return ModelVersion(
        model=raw.model.name,
        version=int(raw.version),
        checkpoint_uuid=raw.checkpoint.uuid,
        created=util.parse_protobuf_timestamp(raw.creationTime),
        metadata=dict(raw.metadata or {}),
        path=None,
    )


class DeterminedRegistry:
    """Determined's model registry with the operations of
    :class:`~cdl_gitlab.registry.ModelRegistry`.

    Versions reference checkpoints Determined's trials stored; files made elsewhere (a
    compressed model) cannot become a version (``stores_files`` is False).
    """

    stores_files = False

    def __init__(self, master: str, client: Determined | None = None) -> None:
        self.master = master
        self._client = client

    @property
    def client(self) -> Determined:
        if self._client is None:
            self._client = connect(self.master)
        return self._client

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return master_errors(self.master, action)

    def _model_exists(self, name: str) -> bool:
        from determined.common.api import errors

        try:
            self.client.get_model(name)
        except errors.NotFoundException:
            return False
        return True

    def create_model(self, name: str, description: str = "", labels: Sequence[str] = ()) -> None:
        from determined.common.api import errors

        check_model_name(name)
        with self._errors(f"create model {name}"):
            if self._model_exists(name):
                return
            try:
                self.client.create_model(name, description=description, labels=list(labels))
            except errors.APIException:
                if not self._model_exists(name):  # else: created concurrently, that's fine
                    raise

    def list_models(self) -> list[str]:
        with self._errors("list models"):
            return sorted(model.name for model in self.client.list_models())

    def register_version(
        self, name: str, checkpoint: Checkpoint, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        meta = ensure_json(metadata or {})
        self.create_model(name)
        with self._errors(f"register checkpoint {checkpoint.uuid} as a version of {name}"):
            registered = self.client.get_model(name).register_version(checkpoint.uuid)
        if meta:
            return self._patch_metadata(name, registered.model_version, meta)
        return self.get_version(name, registered.model_version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        from determined.common import api
        from determined.common.api import bindings

        session = self._session()

        def page(offset: int) -> bindings.v1GetModelVersionsResponse:
            return bindings.get_GetModelVersions(
                session, modelName=name, offset=offset, orderBy=bindings.v1OrderBy.ASC
            )

        with self._errors(f"list versions of model {name}"):
            responses = list(api.read_paginated(page))
        versions = [_to_version(raw) for resp in responses for raw in resp.modelVersions]
        return sorted(versions, key=lambda version: version.version)

    def get_version(self, name: str, version: int | None = None) -> ModelVersion:
        from determined.common.api import bindings, errors

        if version is None:
            versions = self.list_versions(name)
            if not versions:
                raise RegistryError(f"model {name!r} has no registered versions yet")
            return versions[-1]
        try:
            with self._errors(f"get {name} v{version}"):
                raw = bindings.get_GetModelVersion(
                    self._session(), modelName=name, modelVersionNum=version
                ).modelVersion
        except RegistryError as exc:
            if isinstance(exc.__cause__, errors.NotFoundException):
                raise RegistryError(f"model {name!r} has no version {version}") from exc
            raise
        return _to_version(raw)

    def add_metadata(
        self,
        name: str,
        version: int,
        metadata: Mapping[str, Any],
        *,
        overwrite: bool = False,
    ) -> ModelVersion:
        current = self.get_version(name, version)
        try:
            merged = merge_metadata(current.metadata, ensure_json(metadata), overwrite=overwrite)
        except RegistryError as exc:
            raise RegistryError(f"{name} v{version}: {exc}") from exc
        return self._patch_metadata(name, version, merged)

    def _patch_metadata(self, name: str, version: int, metadata: dict[str, Any]) -> ModelVersion:
        from determined.common.api import bindings

        with self._errors(f"set metadata of {name} v{version}"):
            raw = bindings.patch_PatchModelVersion(
                self._session(),
                body=bindings.v1PatchModelVersion(metadata=metadata),
                modelName=name,
                modelVersionNum=version,
            ).modelVersion
        return _to_version(raw)

    def download(self, name: str, version: int | None = None, dest: Path | None = None) -> Path:
        found = self.get_version(name, version)
        target = download_target(name, found.version, dest)
        with self._errors(f"download {name} v{found.version}"):
            checkpoint = self.client.get_checkpoint(found.checkpoint_uuid)
            with atomic_directory(target) as staging:
                checkpoint.download(str(staging))
        return target

    def _session(self) -> Any:
        # The SDK's ModelVersion has no metadata setter and drops the creation time, so those
        # two operations go through the SDK's generated bindings with the client's session.
        return self.client._session
