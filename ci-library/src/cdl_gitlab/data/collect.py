"""Collection: fetch the raw data and commit it to ``<prefix>-raw``.

The source is ``CDL_DATA_MIRROR`` / ``data.mirror`` (a local path or ``file://`` URL) if set,
else ``data.source`` (``http(s)://`` downloads are cached under ``<state_dir>/downloads``;
``file://`` and paths are read in place). A source is a folder or a ``.zip`` / ``.tar.gz`` /
``.tgz`` / ``.tar`` archive of ``<class>/<file>`` folders; one common top folder (``bbc/``)
is stripped, and files outside a class folder (README, LICENSE ...) are skipped and reported.
With ``data.format: idx`` the four idx files are collected instead (:mod:`cdl_gitlab.data.fashion`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tqdm import tqdm

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.model import Commit
from cdl_gitlab.data.names import raw_repo

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.store import DataStore

log = logging.getLogger(__name__)


@dataclass
class Collected:
    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _local_path(source: str) -> Path | None:
    if source.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(source).path))
    if "://" not in source:
        return Path(source).expanduser()
    return None


def download(url: str, cache_dir: Path) -> Path:
    """Download ``url`` once into ``cache_dir`` (atomic rename), with a progress bar."""
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "download"
    target = cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=name, disable=not sys.stderr.isatty()
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(
            f"cannot download {url}: {exc}; set CDL_DATA_MIRROR to a local copy"
        ) from exc
    return target


def _add(collected: Collected, entries: list[tuple[str, bytes]]) -> None:
    names = [PurePosixPath(path) for path, _ in entries]
    tops = {p.parts[0] for p in names if p.parts}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in names)
    for path, (_, data) in zip(names, entries, strict=True):
        parts = path.parts[1:] if strip else path.parts
        if not parts or any(part in ("..", "") or part.startswith(".") for part in parts):
            collected.skipped.append(path.as_posix())
            continue
        if len(parts) < 2:
            log.info("skipped %s: not inside a <class>/ folder", path.as_posix())
            collected.skipped.append(path.as_posix())
            continue
        collected.files["/".join(parts)] = data


def read_source(path: Path) -> Collected:
    """The ``<class>/<file>`` items of a folder or an archive."""
    collected = Collected()
    entries: list[tuple[str, bytes]] = []
    if path.is_dir():
        for dirpath, _dirs, filenames in os.walk(path):
            for name in filenames:
                full = Path(dirpath, name)
                entries.append((full.relative_to(path).as_posix(), full.read_bytes()))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                    entries.append((info.filename, archive.read(info)))
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        entries.append((member.name, handle.read()))
    elif path.exists():
        raise DataError(f"{path}: not a folder, zip or tar archive of <class>/<file> items")
    else:
        raise DataError(f"{path}: no such file or folder")
    _add(collected, sorted(entries))
    return collected


def resolve_source(settings: Settings) -> Path:
    """The local file or folder to collect from (downloading ``data.source`` if needed)."""
    source = settings.data_mirror or settings.config.data.source
    if not source:
        raise DataError(
            "no data source: set data.source or data.mirror in cdl.yaml, or CDL_DATA_MIRROR"
        )
    local = _local_path(source)
    if local is not None:
        return local
    if source.startswith(("http://", "https://")):
        return download(source, settings.state_dir / "downloads")
    raise DataError(f"unsupported data source {source!r}: use http(s)://, file:// or a path")


def collect(settings: Settings, store: DataStore) -> Commit:
    """Collect the source into ``<prefix>-raw`` on ``data.branch`` (a no-op if unchanged)."""
    if settings.config.data.format == "idx":
        from cdl_gitlab.data import fashion

        return fashion.collect(settings, store)
    path = resolve_source(settings)
    collected = read_source(path)
    if not collected.files:
        raise DataError(f"{path}: no <class>/<file> items found")
    repo = raw_repo(settings)
    store.create_repo(repo, "raw data as collected")
    commit = store.put(
        repo,
        settings.config.data.branch,
        collected.files,
        f"collect {len(collected.files)} files from {path.name}",
    )
    skipped = f", skipped {len(collected.skipped)}: {', '.join(collected.skipped[:5])}"
    print(
        f"collect: {len(collected.files)} files -> {repo}@{commit.id[:12]}"
        + (skipped if collected.skipped else "")
    )
    return commit
