"""The idx/gzip reader: good files, and every kind of bad file rejected with a clear message."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from cdl_gitlab.data.formats import idx_files as idx
from cdl_gitlab.errors import CDLError

RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
LABELS = (np.arange(10) % 4).astype(np.uint8)


def write(tmp_path: Path, name: str, array: np.ndarray, kind: idx.Kind) -> Path:
    return idx.write(tmp_path / name, array, kind)


def gz(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_good_files_round_trip(tmp_path: Path, suffix: str) -> None:
    images = write(tmp_path, f"i-idx3-ubyte{suffix}", IMAGES, "images")
    labels = write(tmp_path, f"l-idx1-ubyte{suffix}", LABELS, "labels")
    pair = idx.read_pair(images, labels, shape=(28, 28))
    assert pair.images.dtype == np.uint8 and pair.images.shape == (10, 28, 28)
    assert np.array_equal(pair.images, IMAGES) and np.array_equal(pair.labels, LABELS)
    with idx.IdxReader(images, "images") as reader:
        assert reader.compressed is (suffix == ".gz")
        assert reader.header.magic == 0x00000803 and reader.header.dims == (10, 28, 28)


def test_reader_streams_batches_and_reads_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "i.gz", IMAGES, "images")
    with idx.IdxReader(path, "images") as reader:
        sizes = [len(block) for block in reader.batches(4)]
    assert sizes == [4, 4, 2]
    blocks = list(idx.iter_pair(path.read_bytes(), idx.encode(LABELS, "labels"), batch=3))
    assert [len(b) for b, _ in blocks] == [3, 3, 3, 1]
    assert np.array_equal(np.concatenate([y for _, y in blocks]), LABELS)
    assert np.array_equal(np.concatenate([b for b, _ in blocks]), IMAGES)


def test_wrong_magic_names_the_file_and_both_numbers(tmp_path: Path) -> None:
    labels = write(tmp_path, "train-labels-idx1-ubyte.gz", LABELS, "labels")
    with pytest.raises(idx.IdxError) as info:
        idx.read_images(labels)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in message
    assert "magic number 0x00000801, expected 0x00000803" in message
    text = gz(tmp_path, "readme.gz", b"<html>not found</html>")
    with pytest.raises(idx.IdxError, match="magic number 0x3c68746d"):
        idx.read_labels(text)
    assert isinstance(info.value, CDLError)


def test_truncated_gzip_is_rejected(tmp_path: Path) -> None:
    good = write(tmp_path, "i.gz", IMAGES, "images").read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(idx.IdxError, match=r"cut\.gz: truncated gzip stream"):
        idx.read_images(cut)
    # every item decompresses but the gzip trailer (CRC, size) is missing
    tail = tmp_path / "tail.gz"
    tail.write_bytes(good[:-4])
    with pytest.raises(idx.IdxError, match="truncated gzip stream"):
        idx.read_images(tail)


def test_corrupt_gzip_is_rejected(tmp_path: Path) -> None:
    good = bytearray(write(tmp_path, "i.gz", IMAGES, "images").read_bytes())
    crc = good.copy()
    crc[-8] ^= 0xFF  # the CRC-32 of the trailer
    (tmp_path / "crc.gz").write_bytes(bytes(crc))
    with pytest.raises(idx.IdxError, match=r"crc\.gz: corrupt gzip data \(CRC check failed"):
        idx.read_images(tmp_path / "crc.gz")
    bad = good.copy()
    bad[10] = 0xFF  # the first deflate block header: reserved block type 11
    (tmp_path / "block.gz").write_bytes(bytes(bad))
    with pytest.raises(idx.IdxError, match=r"block\.gz: corrupt gzip data \(.*invalid block"):
        idx.read_images(tmp_path / "block.gz")


def test_short_payload_and_trailing_bytes(tmp_path: Path) -> None:
    payload = idx.encode(IMAGES, "images")
    short = gz(tmp_path, "short.gz", payload[:-100])
    with pytest.raises(
        idx.IdxError,
        match=r"short\.gz: payload is 7740 bytes, the header "
        r"promises 10 images x 784 byte\(s\) = 7840 bytes: "
        r"the file is truncated \(9 complete items\)",
    ):
        idx.read_images(short)
    raw = tmp_path / "raw-idx3-ubyte"
    raw.write_bytes(payload[:-1])
    with pytest.raises(idx.IdxError, match="the file is truncated"):
        idx.read_images(raw)
    extra = gz(tmp_path, "extra.gz", payload + b"\0\0\0")
    with pytest.raises(idx.IdxError, match="3 unexpected bytes after the 7840-byte payload"):
        idx.read_images(extra)
    header = gz(tmp_path, "header.gz", payload[:9])
    with pytest.raises(idx.IdxError, match=r"file ends inside the dimensions \(5 of 12 bytes\)"):
        idx.read_images(header)
    empty = gz(tmp_path, "empty.gz", struct.pack(">II", 0x801, 0))
    with pytest.raises(idx.IdxError, match="holds 0 items"):
        idx.read_labels(empty)
    huge = gz(tmp_path, "huge.gz", struct.pack(">IIII", 0x803, 4_000_000_000, 28, 28) + b"x")
    with pytest.raises(idx.IdxError, match=r"huge\.gz: payload is 1 bytes.*\(0 complete items\)"):
        idx.read_images(huge)
    wide = gz(tmp_path, "wide.gz", struct.pack(">IIII", 0x803, 1, 1 << 20, 1 << 10))
    with pytest.raises(idx.IdxError, match="implausible item dimensions"):
        idx.read_images(wide)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    images = write(tmp_path, "t10k-images-idx3-ubyte.gz", IMAGES, "images")
    labels = write(tmp_path, "t10k-labels-idx1-ubyte.gz", LABELS[:9], "labels")
    with pytest.raises(
        idx.IdxError,
        match=r"t10k-images-idx3-ubyte\.gz holds 10 images but "
        r".*t10k-labels-idx1-ubyte\.gz holds 9 labels",
    ):
        idx.read_pair(images, labels, names=(str(images), str(labels)))


def test_dims_mismatch_is_rejected(tmp_path: Path) -> None:
    big = write(tmp_path, "big.gz", np.zeros((2, 32, 30), dtype=np.uint8), "images")
    with pytest.raises(idx.IdxError, match=r"big\.gz: images are 32x30 pixels, expected 28x28"):
        idx.read_images(big, shape=(28, 28))
    assert idx.read_images(big).shape == (2, 32, 30)  # no expectation: any size


def test_missing_file_and_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(idx.IdxError, match=r"nope\.gz: cannot open"):
        idx.read_labels(tmp_path / "nope.gz")
    with pytest.raises(ValueError, match="3-dimensional"):
        idx.encode(LABELS, "images")
