"""Where raw data comes from: a local mirror (path or ``file://``) or a URL downloaded once.

``CDL_DATA_MIRROR`` / ``data.mirror`` wins over ``data.source``; ``http(s)://`` downloads are
cached under ``<state_dir>/downloads``. With ``data.source_sha256`` set (``$CDL_DATA_SHA256``
overrides it, empty to disable), the download and a mirror file are both checked against it:
a mismatch is one error and nothing is collected.

Downloads (:func:`download`) stream into ``<name>.part`` with a progress bar on a terminal,
retry failed transfers with back-off, resume from the partial file with an HTTP ``Range``
request (a server that ignores it sends the whole file again), refuse more than
``max_bytes``, and become the cached file (atomic rename) only once complete and verified.
(pooch verifies hashes and retries, but neither resumes nor caps the size.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tqdm import tqdm

from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def local_path(source: str) -> Path | None:
    """The path of a ``file://`` URL or a plain path; None for other URLs."""
    if source.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(source).path))
    if "://" not in source:
        return Path(source).expanduser()
    return None


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify(path: Path, sha256: str, what: str) -> None:
    """Raise :class:`DataError` unless the file ``path`` has the SHA-256 ``sha256``."""
    if not sha256:
        return
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise DataError(
            f"{what}: SHA-256 mismatch: expected {sha256.lower()} (data.source_sha256), got "
            f"{actual}; nothing was collected. Use a correct copy, update data.source_sha256 "
            "if the source changed on purpose, or set CDL_DATA_SHA256 to the hash of a mirror "
            "that holds other data"
        )
    log.info("%s: SHA-256 %s verified", what, actual)


def _transfer(url: str, part: Path, max_bytes: int, name: str) -> None:
    """One attempt: append to ``part`` from where it ends (``Range``), up to ``max_bytes``."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the partial file is already complete (or longer): restart
            part.unlink(missing_ok=True)
        elif 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        raise
    with response:
        if start and response.status != 206:
            start = 0  # the server ignored the range: it sends the whole file
        length = int(response.headers.get("Content-Length") or 0)
        total = start + length if length else None
        if total and total > max_bytes:
            raise DataError(f"{url}: {total} bytes > the download limit of {max_bytes} bytes")
        with (
            open(part, "ab" if start else "wb") as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=name,
                disable=not sys.stderr.isatty(),
            ) as bar,
        ):
            written = start
            while chunk := response.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DataError(f"{url}: more than the download limit of {max_bytes} bytes")
                out.write(chunk)
                bar.update(len(chunk))
        if length and written < start + length:
            raise ConnectionError(f"transfer ended after {written} of {start + length} bytes")


def download(
    url: str,
    cache_dir: Path,
    sha256: str = "",
    max_bytes: int = 50 * 1024**3,
    retries: int = 4,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` once into ``cache_dir`` (see the module docstring)."""
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "download"
    key = sha256.lower()[:16] if sha256 else hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache_dir / f"{key}-{name}"
    if target.is_file():
        verify(target, sha256, f"cached download of {url}")
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = cache_dir / f".{target.name}.part"
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, max_bytes, name)
            break
        except DataError:
            part.unlink(missing_ok=True)
            raise
        except (OSError, urllib.error.URLError) as exc:
            if attempt == retries:
                raise DataError(
                    f"cannot download {url} ({retries + 1} attempts): {exc}; set "
                    "CDL_DATA_MIRROR to a local copy"
                ) from exc
            log.warning("download of %s failed (%s); retrying", url, exc)
            time.sleep(backoff * 2**attempt)
    try:
        verify(part, sha256, f"download of {url}")
    except DataError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def configured_source(settings: Settings) -> str:
    """``CDL_DATA_MIRROR`` / ``data.mirror`` if set, else ``data.source`` ('' if neither)."""
    return settings.data_mirror or settings.config.data.source
