"""Image features: PNG bytes or arrays -> float32 grayscale images scaled to 0..1."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cdl_gitlab.fsutil import atomic_write_json


class ImageDecoder:
    """Decodes images to ``(height, width)`` float32 arrays in 0..1 (grayscale)."""

    kind = "image"

    def __init__(self, height: int = 28, width: int = 28) -> None:
        if height < 1 or width < 1:
            raise ValueError("image height and width must be positive")
        self.height = height
        self.width = width

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.height, self.width)

    def decode(self, item: Any) -> np.ndarray:
        """One image from PNG/JPEG bytes, a nested list or an array (0..255 or 0..1)."""
        if isinstance(item, bytes | bytearray):
            try:
                with Image.open(io.BytesIO(item)) as image:
                    image = image.convert("L")
                    if image.size != (self.width, self.height):
                        image = image.resize((self.width, self.height), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.float32) / 255.0
            except OSError as exc:
                raise ValueError(f"not a decodable image: {exc}") from exc
            return array
        array = np.asarray(item, dtype=np.float32)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 1 and array.size == self.height * self.width:
            array = array.reshape(self.height, self.width)
        if array.shape != (self.height, self.width):
            raise ValueError(
                f"expected an image of {self.height}x{self.width} pixels, got shape {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("image contains NaN or infinite values")
        if array.max(initial=0.0) > 1.0:
            array = array / 255.0
        return np.clip(array, 0.0, 1.0).astype(np.float32)

    def transform(self, items: Sequence[Any]) -> np.ndarray:
        """A float32 array of shape ``(len(items), height, width)``."""
        out = np.zeros((len(items), self.height, self.width), dtype=np.float32)
        for row, item in enumerate(items):
            out[row] = self.decode(item)
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: dict) -> ImageDecoder:
        return cls(int(data["height"]), int(data["width"]))

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ImageDecoder:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
