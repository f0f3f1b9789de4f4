"""Safe, streaming reading of an ``archive``-format source into a staging folder.

A source is a folder or a ``.zip`` / ``.tar(.gz)`` archive of ``<class>/<file>`` items. Each
entry is either copied into the staging folder (one at a time, in chunks: memory stays bounded
whatever the size of the data set) or discarded with a logged reason, never silently:

- ``symlink``: a symbolic link (folder, zip or tar entry) is never followed;
- ``special_file``: FIFOs, devices, sockets, tar hard links are never opened (a FIFO would block);
- ``unsafe_path``: an absolute path or one with a ``..`` part;
- ``hidden``, ``outside_class_folder``: dot files, files not inside a ``<class>/`` folder;
- ``oversized_member``: larger than ``data.limits.max_member_bytes``;
- ``compression_ratio``: a zip member whose size exceeds ``data.limits.max_compression_ratio``
  times its compressed size (a zip bomb);
- ``unreadable``: a member that fails to decompress (bad CRC, encrypted, truncated).

A source larger in total than ``data.limits.max_total_bytes`` is refused as a whole
(:class:`DataError`): nothing is staged, so nothing is committed. One common top folder
(``<name>/``) is stripped.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.stores.base import iter_folder

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps on what a source may contain (``data.limits`` in ``cdl.yaml``)."""

    max_member_bytes: int = 256 * 1024**2
    max_total_bytes: int = 50 * 1024**3
    max_compression_ratio: float = 200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        limits = settings.config.data.limits
        return cls(limits.max_member_bytes, limits.max_total_bytes, limits.max_compression_ratio)


@dataclass(frozen=True)
class Discard:
    """A source entry that was not collected, and why."""

    path: str
    reason: str
    detail: str = ""


DISCARD_SAMPLE = 1000
"""How many discarded entries :class:`Staged` keeps (every one is logged and counted)."""


@dataclass
class Staged:
    """What :func:`stage_source` copied into ``dest`` and what it discarded.

    Only counters and the first :data:`DISCARD_SAMPLE` discards are held in memory: the staged
    paths are the files under ``dest`` (:attr:`files` lists them from disk)."""

    dest: Path
    count: int = 0
    total_bytes: int = 0
    discarded: list[Discard] = field(default_factory=list)
    discard_count: int = 0
    reason_counts: Counter[str] = field(default_factory=Counter)

    @property
    def files(self) -> list[str]:
        """The staged ``<class>/<file>`` paths, sorted (read from ``dest``)."""
        return [rel for rel, _ in iter_folder(self.dest)]

    def reasons(self) -> Counter[str]:
        return Counter(self.reason_counts)

    def add_discard(self, item: Discard) -> None:
        self.discard_count += 1
        self.reason_counts[item.reason] += 1
        if len(self.discarded) < DISCARD_SAMPLE:
            self.discarded.append(item)


@dataclass(frozen=True)
class _Entry:
    """One entry of a source: its name, what it is, its size and how to open it."""

    name: str
    kind: str  # "file", "symlink", "special"
    size: int = 0
    compressed: int = -1  # zip members only
    handle: object = None


class _Stager:
    def __init__(self, dest: Path, limits: Limits) -> None:
        self.dest = dest
        self.limits = limits
        self.result = Staged(dest)

    def discard(self, name: str, reason: str, detail: str = "") -> None:
        self.result.add_discard(Discard(name, reason, detail))
        log.info("discarded %s: %s%s", name, reason, f" ({detail})" if detail else "")

    def target(self, entry: _Entry, strip: bool) -> str | None:
        """The ``<class>/<file>`` path of an entry, or None after discarding it."""
        name = entry.name
        if _unsafe(name):
            self.discard(name, "unsafe_path", "absolute or '..' path")
            return None
        parts = PurePosixPath(name).parts
        parts = parts[1:] if strip else parts
        if any(part.startswith(".") for part in parts):
            self.discard(name, "hidden")
            return None
        if len(parts) < 2:
            self.discard(name, "outside_class_folder", "items live in <class>/<file>")
            return None
        if entry.kind == "symlink":
            self.discard(name, "symlink", "links are never followed")
            return None
        if entry.kind == "special":
            self.discard(name, "special_file", "not a regular file (FIFO, device, socket, link)")
            return None
        limits = self.limits
        if entry.size > limits.max_member_bytes:
            self.discard(
                name, "oversized_member", f"{entry.size} bytes > {limits.max_member_bytes}"
            )
            return None
        ratio = entry.size / max(entry.compressed, 1)
        if entry.compressed >= 0 and entry.size > 0 and ratio > limits.max_compression_ratio:
            detail = f"compression ratio {ratio:.0f} > {limits.max_compression_ratio:g}"
            self.discard(name, "compression_ratio", detail)
            return None
        return "/".join(parts)

    def copy(self, name: str, rel: str, source: IO[bytes]) -> None:
        """Stream ``source`` to ``dest/rel``, enforcing the member and total caps; a member
        that cannot be read (bad CRC, encrypted, truncated) is discarded as ``unreadable``."""
        out = self.dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        new = not out.exists()  # an archive may hold one name twice: the last copy wins
        written = 0
        try:
            with open(out, "wb") as handle:
                while chunk := source.read(_CHUNK):
                    if written + len(chunk) > self.limits.max_member_bytes:
                        written += len(chunk)
                        break
                    written += len(chunk)
                    self._count(len(chunk))
                    handle.write(chunk)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, RuntimeError) as exc:
            out.unlink()
            self.result.total_bytes -= written
            self.discard(name, "unreadable", str(exc) or type(exc).__name__)
            return
        if written > self.limits.max_member_bytes:
            out.unlink()
            self.result.total_bytes -= written - len(chunk)
            self.discard(name, "oversized_member", f"> {self.limits.max_member_bytes} bytes")
            return
        self.result.count += new

    def _count(self, size: int) -> None:
        self.result.total_bytes += size
        if self.result.total_bytes > self.limits.max_total_bytes:
            raise DataError(
                f"the data source holds more than data.limits.max_total_bytes "
                f"({self.limits.max_total_bytes} bytes): nothing was collected; raise the "
                "limit in cdl.yaml if the source is trusted"
            )


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in PurePosixPath(name).parts


def _strip_top(names: list[str]) -> bool:
    """Whether every (safe) name lies in one common top folder, which is then stripped."""
    paths = [PurePosixPath(name).parts for name in names if not _unsafe(name)]
    return len({parts[0] for parts in paths if parts}) == 1 and all(len(p) > 1 for p in paths)


def _folder_strip(root: Path) -> bool:
    """:func:`_strip_top` for a folder, from its top level: the entries found under it all lie
    in one common top folder (a folder without entries does not count)."""
    with os.scandir(root) as scan:
        top = list(scan)
    if any(not entry.is_dir(follow_symlinks=False) for entry in top):
        return False
    used = 0
    for entry in top:
        used += next(_folder_entries(Path(entry.path)), None) is not None
    return used == 1


def _folder_entries(root: Path) -> Iterator[_Entry]:
    """Every non-folder entry under ``root``, sorted, from ``lstat``: nothing is followed."""
    stack = [root]
    while stack:
        folder = stack.pop()
        names = sorted(os.listdir(folder), reverse=True)  # names only: one folder's at a time
        prefix = folder.relative_to(root).as_posix()
        for name in names:
            full = os.path.join(folder, name)
            rel = name if prefix == "." else f"{prefix}/{name}"
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                yield _Entry(rel, "symlink")
            elif stat.S_ISDIR(info.st_mode):
                stack.append(Path(full))
            elif stat.S_ISREG(info.st_mode):
                yield _Entry(rel, "file", info.st_size, handle=full)
            else:
                yield _Entry(rel, "special")


def _open_regular(path: str) -> IO[bytes] | None:
    """Open a regular file without following a link or blocking on a FIFO swapped in."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        return "special"
    return "file"


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    return "file" if member.isreg() else "special"


def stage_source(path: Path, dest: Path, limits: Limits) -> Staged:
    """Copy the ``<class>/<file>`` items of the folder or archive ``path`` into ``dest``."""
    stager = _Stager(dest, limits)
    dest.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        strip = _folder_strip(path)  # then one entry at a time: no list of the whole folder
        for entry in _folder_entries(path):
            rel = stager.target(entry, strip)
            if rel is None:
                continue
            handle = _open_regular(str(entry.handle))
            if handle is None:
                stager.discard(entry.name, "special_file", "not a regular file when opened")
                continue
            with handle:
                stager.copy(entry.name, rel, handle)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            entries = [
                _Entry(i.filename, _zip_kind(i), i.file_size, i.compress_size, i)
                for i in archive.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/")
            ]
            strip = _strip_top([e.name for e in entries])
            for entry in sorted(entries, key=lambda e: e.name):
                rel = stager.target(entry, strip)
                if rel is not None:
                    with archive.open(entry.handle) as handle:  # type: ignore[call-overload]
                        stager.copy(entry.name, rel, handle)
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            entries = [
                _Entry(m.name, _tar_kind(m), m.size, handle=m)
                for m in archive.getmembers()
                if not m.isdir()
            ]
            strip = _strip_top([e.name for e in entries])
            for entry in sorted(entries, key=lambda e: e.name):
                rel = stager.target(entry, strip)
                handle = archive.extractfile(entry.handle) if rel else None  # type: ignore[arg-type]
                if rel is not None and handle is not None:
                    with handle:
                        stager.copy(entry.name, rel, handle)
    elif path.exists():
        raise DataError(f"{path}: not a folder, zip or tar archive of <class>/<file> items")
    else:
        raise DataError(f"{path}: no such file or folder")
    return stager.result
