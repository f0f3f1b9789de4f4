"""The local model registry: SQLite rows + checkpoint files under ``<root>/models/<name>/<v>/``.

Registration copies the checkpoint into a staging folder first (slow, no lock held), then,
inside one write transaction (SQLite ``BEGIN IMMEDIATE``: a cross-process lock), renames the staging
folder to its version folder, inserts the row and commits. A version is visible only through
its row, and a row is committed only after its folder is complete, so a registration that dies
at any point leaves no half-written version. A version folder without a row (death between
rename and commit) is removed by the next registration, under the same lock.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdl_gitlab.db import create_engine, ensure_schema, sqlite_url, write_transaction
from cdl_gitlab.fsutil import atomic_directory
from cdl_gitlab.registry.base import (
    Checkpoint,
    ModelVersion,
    RegistryError,
    check_model_name,
    checkpoint_folder,
    download_target,
    ensure_json,
    merge_metadata,
)
from cdl_gitlab.registry.tables import SCHEMA, models, versions

_STAGING = ".staging"
_SELECT_VERSION = sa.select(
    versions.c.model,
    versions.c.version,
    versions.c.checkpoint_uuid,
    versions.c.created,
    versions.c.metadata,
)


class LocalRegistry:
    """The model registry of the local profile, safe for concurrent processes."""

    stores_files = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / "registry.sqlite"
        self.models_dir = self.root / "models"
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(sqlite_url(self.db_path))
        ensure_schema(self.engine, SCHEMA)

    # -- plumbing --------------------------------------------------------------------------

    def _version_dir(self, name: str, version: int) -> Path:
        return self.models_dir / name / str(version)

    def _row_to_version(self, row: sa.Row[Any]) -> ModelVersion:
        name, version, checkpoint_uuid, created, metadata = row
        return ModelVersion(
            model=name,
            version=int(version),
            checkpoint_uuid=checkpoint_uuid,
            created=datetime.fromisoformat(created),
            metadata=json.loads(metadata),
            path=self._version_dir(name, int(version)),
        )

    @staticmethod
    def _require_model(conn: sa.Connection, name: str) -> None:
        if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
            raise RegistryError(f"model {name!r} is not in the registry (register a version first)")

    # -- operations ------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "", labels: Sequence[str] = ()) -> None:
        check_model_name(name)
        with write_transaction(self.engine) as conn:
            self._insert_model(conn, name, description, labels)

    @staticmethod
    def _insert_model(
        conn: sa.Connection, name: str, description: str, labels: Sequence[str]
    ) -> None:
        """Add the model unless it exists (the caller holds the write lock)."""
        if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first():
            return
        conn.execute(
            sa.insert(models).values(
                name=name,
                description=description,
                labels=json.dumps(list(labels)),
                created=datetime.now(UTC).isoformat(),
            )
        )

    def list_models(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.scalars(sa.select(models.c.name).order_by(models.c.name)))

    def register_version(
        self, name: str, checkpoint: Checkpoint, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        check_model_name(name)
        meta = ensure_json(metadata or {})
        staging = self._stage(checkpoint_folder(checkpoint, "local"), name)
        try:
            with write_transaction(self.engine) as conn:
                self._insert_model(conn, name, "", ())
                last = conn.scalar(sa.select(models.c.last_version).where(models.c.name == name))
                version = int(last) + 1
                target = self._version_dir(name, version)
                if target.exists():  # left by a registration that died before its commit
                    shutil.rmtree(target)
                self._publish(staging, target)
                try:
                    created = datetime.now(UTC)
                    self._insert_row(conn, name, version, checkpoint.uuid, created, meta)
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ModelVersion(name, version, checkpoint.uuid, created, meta, target)

    def _stage(self, source: Path, name: str) -> Path:
        """Copy the checkpoint files into a fresh staging folder (no lock held)."""
        staging_root = self.models_dir / name / _STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        self._clean_stale_staging(staging_root)
        staging = staging_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        shutil.copytree(source, staging, symlinks=False)
        return staging

    @staticmethod
    def _clean_stale_staging(staging_root: Path) -> None:
        """Remove staging folders of processes that no longer run."""
        for entry in staging_root.iterdir():
            pid_text = entry.name.split("-", 1)[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid():
                continue
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except PermissionError:
                continue

    @staticmethod
    def _publish(staging: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)

    @staticmethod
    def _insert_row(
        conn: sa.Connection,
        name: str,
        version: int,
        checkpoint_uuid: str,
        created: datetime,
        metadata: dict[str, Any],
    ) -> None:
        conn.execute(
            sa.insert(versions).values(
                model=name,
                version=version,
                checkpoint_uuid=checkpoint_uuid,
                created=created.isoformat(),
                metadata=json.dumps(metadata),
            )
        )
        conn.execute(sa.update(models).where(models.c.name == name).values(last_version=version))

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            self._require_model(conn, name)
            rows = conn.execute(
                _SELECT_VERSION.where(versions.c.model == name).order_by(versions.c.version)
            ).all()
        return [self._row_to_version(row) for row in rows]

    def get_version(self, name: str, version: int | None = None) -> ModelVersion:
        with self.engine.connect() as conn:
            return self._get(conn, name, version)

    def _get(self, conn: sa.Connection, name: str, version: int | None) -> ModelVersion:
        self._require_model(conn, name)
        query = _SELECT_VERSION.where(versions.c.model == name)
        if version is None:
            query = query.order_by(versions.c.version.desc()).limit(1)
        else:
            query = query.where(versions.c.version == version)
        found = conn.execute(query).first()
        if found is None:
            if version is None:
                raise RegistryError(f"model {name!r} has no registered versions yet")
            raise RegistryError(f"model {name!r} has no version {version}")
        return self._row_to_version(found)

    def add_metadata(
        self,
        name: str,
        version: int,
        metadata: Mapping[str, Any],
        *,
        overwrite: bool = False,
    ) -> ModelVersion:
        update = ensure_json(metadata)
        with write_transaction(self.engine) as conn:
            current = self._get(conn, name, version)
            try:
                merged = merge_metadata(current.metadata, update, overwrite=overwrite)
            except RegistryError as exc:
                raise RegistryError(f"{name} v{version}: {exc}") from exc
            conn.execute(
                sa.update(versions)
                .where(versions.c.model == name, versions.c.version == version)
                .values(metadata=json.dumps(merged))
            )
        return ModelVersion(
            current.model,
            current.version,
            current.checkpoint_uuid,
            current.created,
            merged,
            current.path,
        )

    def download(self, name: str, version: int | None = None, dest: Path | None = None) -> Path:
        found = self.get_version(name, version)
        assert found.path is not None
        target = download_target(name, found.version, dest)
        with atomic_directory(target) as staging:
            shutil.copytree(found.path, staging, dirs_exist_ok=True)
        return target
