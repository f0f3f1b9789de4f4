"""Generated stand-ins for the Fashion-MNIST files (the real ones cannot be downloaded here).

Each class has a fixed 28x28 pattern (a few Gaussian blobs and a stripe texture); an item is
its class pattern shifted by up to two pixels, scaled in brightness and noised. Written as
the four canonical idx files with the real reader's counterpart,
:func:`cdl_gitlab.data.formats.idx_files.write`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cdl_gitlab.data.formats import idx_files as idx
from cdl_gitlab.data.formats.idx import FILES

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SIZE = 28


def class_patterns(n_classes: int = 10, seed: int = 0) -> np.ndarray:
    """``(n_classes, 28, 28)`` float patterns in 0..1, one per class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    patterns = np.zeros((n_classes, SIZE, SIZE), dtype=np.float32)
    for k in range(n_classes):
        for _ in range(3):
            cy, cx = rng.uniform(5, SIZE - 5, size=2)
            sigma = rng.uniform(2.0, 5.0)
            patterns[k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        angle = np.pi * k / n_classes
        stripes = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.9)
        patterns[k] = 0.7 * patterns[k] / patterns[k].max() + 0.3 * stripes
    return patterns


def generate(
    n: int, seed: int, patterns: np.ndarray, noise: float = 0.15, shift: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8, balanced classes in shuffled order) and their labels; ``noise``
    (pixel noise, 0..1 scale) and ``shift`` (largest offset in pixels) set the difficulty."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(patterns)).astype(np.uint8)
    images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    for i, label in enumerate(labels):
        offset = tuple(rng.integers(-shift, shift + 1, size=2))
        shifted = np.roll(patterns[label], offset, axis=(0, 1))
        image = shifted * rng.uniform(0.6, 1.0) + rng.normal(0.0, noise, (SIZE, SIZE))
        images[i] = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return images, labels


def write_mirror(
    folder: Path,
    n_train: int = 600,
    n_test: int = 200,
    seed: int = 0,
    compress: bool = True,
    noise: float = 0.15,
    shift: int = 2,
) -> Path:
    """The four canonical files in ``folder`` (gzip-compressed unless ``compress`` is False)."""
    patterns = class_patterns(len(FASHION_CLASSES), seed)
    for split, n, split_seed in (("train", n_train, seed + 1), ("test", n_test, seed + 2)):
        images, labels = generate(n, split_seed, patterns, noise, shift)
        for kind, array in (("images", images), ("labels", labels)):
            name = FILES[split][kind]
            idx.write(folder / (name if compress else name.removesuffix(".gz")), array, kind)
    return folder
