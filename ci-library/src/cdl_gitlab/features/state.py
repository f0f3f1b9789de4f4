"""The feature state a checkpoint carries: input transform + label encoder, in ``features/``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.features.image import ImageDecoder
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.text import TextVectorizer
from cdl_gitlab.fsutil import atomic_write_json

FEATURES_DIR = "features"
Transform = TextVectorizer | ImageDecoder


@dataclass
class FeatureState:
    """What turns raw inputs into model inputs and model outputs into class names."""

    transform: Transform
    labels: LabelEncoder

    @property
    def task(self) -> str:
        return self.transform.kind

    @property
    def classes(self) -> list[str]:
        return self.labels.classes

    def inputs(self, items: Sequence[Any]) -> np.ndarray:
        return self.transform.transform(items)

    def save(self, folder: Path) -> Path:
        """Write ``folder/features/{transform,labels}.json``."""
        target = Path(folder) / FEATURES_DIR
        atomic_write_json(target / "transform.json", self.transform.to_dict())
        atomic_write_json(target / "labels.json", self.labels.to_dict())
        return target

    @classmethod
    def load(cls, folder: Path) -> FeatureState:
        source = Path(folder) / FEATURES_DIR
        if not source.is_dir():
            raise FileNotFoundError(f"{folder} has no {FEATURES_DIR}/ folder (feature state)")
        data = json.loads((source / "transform.json").read_text(encoding="utf-8"))
        transform: Transform
        if data.get("kind") == "text":
            transform = TextVectorizer.from_dict(data)
        elif data.get("kind") == "image":
            transform = ImageDecoder.from_dict(data)
        else:
            raise ValueError(f"{source / 'transform.json'}: unknown kind {data.get('kind')!r}")
        return cls(transform, LabelEncoder.load(source / "labels.json"))
