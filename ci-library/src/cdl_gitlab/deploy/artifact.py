"""Model artifacts: a registered version exported into one self-contained folder.

Layout (everything serving needs; no registry, no Determined)::

    model.json      manifest: name, version, format, task, classes, input, serving limits,
                    per-file SHA-256 and one checksum over them
    checkpoint/     the checkpoint folder (weights + ``features/`` state); for compressed
                    versions the quantized model file as well
    classes.json    class names in output order
    lineage.json    the version's lineage (code, data, experiment, environment ...)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdl_gitlab import __version__
from cdl_gitlab.errors import CDLError
from cdl_gitlab.fsutil import atomic_write_json

MANIFEST = "model.json"
CHECKPOINT_DIR = "checkpoint"
FORMATS = ("native", "torch-int8", "tflite")
MANIFEST_SCHEMA = 1


class ArtifactError(CDLError):
    """An artifact is missing, incomplete or does not match its checksum."""


@dataclass(frozen=True)
class ArtifactManifest:
    """The parsed ``model.json`` of an artifact."""

    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def version(self) -> int:
        return int(self.data["version"])

    @property
    def format(self) -> str:
        return str(self.data.get("format", "native"))

    @property
    def task(self) -> str:
        return str(self.data["task"])

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])

    @property
    def checksum(self) -> str:
        return str(self.data["checksum"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.get("input", {}).get("shape", ()))

    @property
    def serving(self) -> dict[str, Any]:
        return dict(self.data.get("serving", {}))


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the manifest, by POSIX relative path."""
    hashes: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        hashes[relative] = digest.hexdigest()
    return hashes


def combined_checksum(hashes: dict[str, str]) -> str:
    """One SHA-256 over the sorted ``path  hash`` lines (like ``sha256sum`` output)."""
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(hashes.items()))
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()


def write_manifest(folder: Path, fields: dict[str, Any]) -> ArtifactManifest:
    """Hash ``folder`` and write its ``model.json`` with ``fields``."""
    hashes = file_hashes(folder)
    data = {
        "schema": MANIFEST_SCHEMA,
        **fields,
        "files": hashes,
        "checksum": combined_checksum(hashes),
        "packaged": datetime.now(UTC).isoformat(timespec="seconds"),
        "cdl_version": __version__,
    }
    if data.get("format", "native") not in FORMATS:
        raise ArtifactError(f"unknown artifact format {data['format']!r} (known: {FORMATS})")
    atomic_write_json(folder / MANIFEST, data)
    return ArtifactManifest(data)


def read_manifest(folder: Path, verify: bool = False) -> ArtifactManifest:
    """The artifact's manifest; with ``verify`` also check every file against its hash."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(
            f"{folder} is not a model artifact (no {MANIFEST}); create one with "
            "`cdl deploy package`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    for key in ("name", "version", "task", "classes", "checksum", "files"):
        if key not in data:
            raise ArtifactError(f"{path}: manifest lacks {key!r}")
    manifest = ArtifactManifest(data)
    if verify:
        verify_artifact(Path(folder), manifest)
    return manifest


def verify_artifact(folder: Path, manifest: ArtifactManifest) -> None:
    """ArtifactError naming the first missing, extra or changed file."""
    actual = file_hashes(folder)
    expected: dict[str, str] = manifest.data["files"]
    for relative, digest in expected.items():
        if relative not in actual:
            raise ArtifactError(f"{folder}: {relative} is missing (re-package the model)")
        if actual[relative] != digest:
            raise ArtifactError(f"{folder}: {relative} does not match its checksum")
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ArtifactError(f"{folder}: unexpected file {extra[0]} (re-package the model)")
    if combined_checksum(expected) != manifest.checksum:
        raise ArtifactError(f"{folder}: {MANIFEST} checksum does not match its file list")


def replace_directory(staging: Path, target: Path) -> None:
    """Move the finished ``staging`` folder to ``target``, replacing what was there.

    The old folder is renamed aside first, so ``target`` is always either the old or the
    new complete folder (there is a moment with neither, never a half-written one).
    """
    target = Path(target)
    aside: Path | None = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.rename(target, aside / target.name)
    try:
        os.rename(staging, target)
    except BaseException:
        if aside is not None:
            os.rename(aside / target.name, target)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh temporary folder beside ``target`` (same file system, so renames are atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
