"""Where raw data comes from: a local mirror (path or ``file://``) or a URL downloaded once.

``CDL_DATA_MIRROR`` / ``data.mirror`` wins over ``data.source``; ``http(s)://`` downloads are
cached under ``<state_dir>/downloads`` (atomic rename, progress bar on a terminal).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tqdm import tqdm

from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings


def local_path(source: str) -> Path | None:
    """The path of a ``file://`` URL or a plain path; None for other URLs."""
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


def configured_source(settings: Settings) -> str:
    """``CDL_DATA_MIRROR`` / ``data.mirror`` if set, else ``data.source`` ('' if neither)."""
    return settings.data_mirror or settings.config.data.source
