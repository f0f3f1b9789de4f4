"""The idx file format of MNIST-style data sets, gzip-compressed or not.

An idx file is a 4-byte big-endian magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the items as a C-ordered array.
Images are ``0x00000803`` (unsigned bytes, 3 dims: count, rows, columns), labels
``0x00000801`` (unsigned bytes, 1 dim: count). :class:`IdxReader` streams the payload in
batches and checks everything on the way: the magic number, the dimensions, the payload
length (short or with trailing bytes) and, for gzip, the stream's integrity (truncated or
corrupt data, CRC). Every problem is an :class:`IdxError` naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

import numpy as np

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.fsutil import atomic_write_bytes

Kind = Literal["images", "labels"]
UBYTE = 0x08
MAGIC: dict[str, int] = {"images": 0x00000803, "labels": 0x00000801}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_MAX_ITEM_BYTES = 1 << 26
Source = str | os.PathLike[str] | bytes


class IdxError(DataError):
    """An idx file is unreadable, truncated, corrupt or not what it should be."""


@dataclass(frozen=True)
class IdxHeader:
    """The parsed header: type code and dimensions (the first one is the item count)."""

    type_code: int
    dims: tuple[int, ...]

    @property
    def magic(self) -> int:
        return (self.type_code << 8) | len(self.dims)

    @property
    def count(self) -> int:
        return self.dims[0]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.dims[1:]

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.item_shape, dtype=np.int64)) if self.item_shape else 1


@dataclass
class IdxPair:
    """Images and their labels, checked to have the same count."""

    images: np.ndarray  # (count, rows, columns) uint8
    labels: np.ndarray  # (count,) uint8


class IdxReader:
    """Streams one idx file; use as a context manager, then :meth:`batches` or :meth:`read`."""

    def __init__(self, source: Source, kind: Kind, name: str | None = None) -> None:
        self.kind = kind
        self.name = name or (os.fspath(source) if not isinstance(source, bytes) else kind)
        self._raw: BinaryIO
        try:
            self._raw = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise IdxError(f"{self.name}: cannot open: {exc.strerror or exc}") from exc
        self.compressed = self._raw.read(2) == _GZIP_MAGIC
        self._raw.seek(0)
        stream = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.compressed else self._raw
        self._stream = cast(BinaryIO, stream)
        self._consumed = False
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- low-level reads
    def error(self, what: str) -> IdxError:
        """An :class:`IdxError` about this file."""
        return IdxError(f"{self.name}: {what}")

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes; gzip damage becomes an :class:`IdxError`."""
        try:
            return self._stream.read(size)
        except EOFError as exc:
            raise self.error(
                "truncated gzip stream (the compressed data ends before its "
                "end-of-stream marker): download the file again"
            ) from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise self.error(f"corrupt gzip data ({exc}): download the file again") from exc
        except OSError as exc:
            raise self.error(f"cannot read: {exc}") from exc

    def _read_exact(self, size: int, what: str) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._read(size - len(data))
            if not chunk:
                raise self.error(f"file ends inside the {what} ({len(data)} of {size} bytes)")
            data += chunk
        return data

    def _read_header(self) -> IdxHeader:
        magic = self._read_exact(4, "magic number")
        expected = MAGIC[self.kind]
        zero, type_code, ndim = struct.unpack(">HBB", magic)
        found = struct.unpack(">I", magic)[0]
        if zero != 0 or type_code != UBYTE or ndim != (expected & 0xFF):
            raise self.error(
                f"magic number {found:#010x}, expected {expected:#010x} (idx{expected & 0xFF} "
                f"unsigned-byte {self.kind}): not an idx {self.kind} file"
            )
        dims = struct.unpack(f">{ndim}I", self._read_exact(4 * ndim, "dimensions"))
        if dims[0] == 0:
            raise self.error("the header says it holds 0 items")
        if any(d == 0 for d in dims[1:]):
            raise self.error(f"zero-sized item dimensions {dims[1:]}")
        header = IdxHeader(type_code, tuple(dims))
        if header.item_bytes > _MAX_ITEM_BYTES:
            raise self.error(
                f"implausible item dimensions {dims[1:]} "
                f"({header.item_bytes} bytes per item): corrupt header"
            )
        return header

    # ---------------------------------------------------------------- payload
    def batches(self, size: int = 4096) -> Iterator[np.ndarray]:
        """The items in arrays of up to ``size`` (uint8, shape ``(n, *item_shape)``).

        After the last item the rest of the file is read: trailing bytes, a truncated or
        corrupt gzip stream and a CRC mismatch are errors even though every item was read.
        """
        if self._consumed:
            raise self.error("payload already read")
        self._consumed = True
        header = self.header
        total = header.count * header.item_bytes
        done = 0
        for start in range(0, header.count, max(1, size)):
            n = min(size, header.count - start)
            buffer = bytearray(n * header.item_bytes)
            view = memoryview(buffer)
            filled = 0
            while filled < len(buffer):
                chunk = self._read(min(_CHUNK, len(buffer) - filled))
                if not chunk:
                    have = done + filled
                    raise self.error(
                        f"payload is {have} bytes, the header promises {header.count} "
                        f"{self.kind} x {header.item_bytes} byte(s) = {total} bytes: the file "
                        f"is truncated ({have // header.item_bytes} complete items)"
                    )
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
            done += filled
            yield np.frombuffer(buffer, dtype=np.uint8).reshape(n, *header.item_shape)
        extra = 0
        while chunk := self._read(_CHUNK):
            extra += len(chunk)
        if extra:
            raise self.error(
                f"{extra} unexpected bytes after the {total}-byte payload of "
                f"{header.count} {self.kind}: corrupt or not an idx file"
            )

    def read(self) -> np.ndarray:
        """Every item as one uint8 array of shape ``dims``.

        Memory grows with the data actually read, so a damaged header that promises billions
        of items fails as truncated instead of allocating them up front."""
        return np.concatenate(list(self.batches()))

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def __enter__(self) -> IdxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_shape(reader: IdxReader, shape: tuple[int, int] | None) -> None:
    if shape is not None and reader.header.item_shape != tuple(shape):
        found = "x".join(map(str, reader.header.item_shape))
        raise reader.error(f"images are {found} pixels, expected {shape[0]}x{shape[1]}")


def read_images(
    source: Source, name: str | None = None, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """An idx3 image file as ``(count, rows, columns)`` uint8; ``shape`` = expected (rows, cols)."""
    with IdxReader(source, "images", name) as reader:
        _check_shape(reader, shape)
        return reader.read()


def read_labels(source: Source, name: str | None = None) -> np.ndarray:
    """An idx1 label file as a ``(count,)`` uint8 array."""
    with IdxReader(source, "labels", name) as reader:
        return reader.read()


def iter_pair(
    images: Source,
    labels: Source,
    names: tuple[str, str] | None = None,
    shape: tuple[int, int] | None = None,
    batch: int = 4096,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream an image file with its labels as ``(images, labels)`` batches.

    The label file is read first (it is small); the counts must match before any image is
    yielded. ``shape`` is the expected (rows, columns) of every image.
    """
    image_name, label_name = names or (None, None)
    label_array = read_labels(labels, label_name)
    with IdxReader(images, "images", image_name) as reader:
        _check_shape(reader, shape)
        if reader.header.count != len(label_array):
            raise IdxError(
                f"{reader.name} holds {reader.header.count} images but "
                f"{label_name or 'the label file'} holds {len(label_array)} labels: "
                "the files do not belong together"
            )
        start = 0
        for block in reader.batches(batch):
            yield block, label_array[start : start + len(block)]
            start += len(block)


def read_pair(
    images: Source,
    labels: Source,
    names: tuple[str, str] | None = None,
    shape: tuple[int, int] | None = None,
) -> IdxPair:
    """An image file and its label file, checked (counts, shape) and read whole."""
    blocks = list(iter_pair(images, labels, names, shape))
    return IdxPair(np.concatenate([b for b, _ in blocks]), np.concatenate([y for _, y in blocks]))


def encode(array: np.ndarray, kind: Kind) -> bytes:
    """Uncompressed idx bytes of a uint8 array: images ``(n, rows, cols)``, labels ``(n,)``."""
    ndim = MAGIC[kind] & 0xFF
    data = np.ascontiguousarray(array, dtype=np.uint8)
    if data.ndim != ndim:
        raise ValueError(f"idx {kind} need a {ndim}-dimensional array, got shape {data.shape}")
    return struct.pack(f">I{ndim}I", MAGIC[kind], *data.shape) + data.tobytes()


def write(path: Path, array: np.ndarray, kind: Kind) -> Path:
    """Write ``array`` as an idx file, gzip-compressed when ``path`` ends in ``.gz``."""
    payload = encode(array, kind)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    return atomic_write_bytes(path, payload)
