"""Label encoding: class names in label order <-> integer labels."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cdl_gitlab.fsutil import atomic_write_json


class LabelEncoder:
    """A fixed, ordered list of class names."""

    def __init__(self, classes: Sequence[str]) -> None:
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ValueError("class names must be unique")
        self.classes = list(classes)
        self._index = {name: i for i, name in enumerate(self.classes)}

    @classmethod
    def fit(cls, labels: Iterable[str], classes: Sequence[str] = ()) -> LabelEncoder:
        """``classes`` if given (every label must be one of them), else the sorted labels."""
        seen = sorted(set(labels))
        if not classes:
            return cls(seen)
        unknown = [label for label in seen if label not in set(classes)]
        if unknown:
            raise ValueError(f"labels {unknown} are not among the configured classes {classes}")
        return cls(classes)

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        try:
            return np.array([self._index[label] for label in labels], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"unknown label {exc.args[0]!r} (classes: {self.classes})") from None

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.classes[int(i)] for i in indices]

    def to_dict(self) -> dict:
        return {"classes": self.classes}

    @classmethod
    def from_dict(cls, data: dict) -> LabelEncoder:
        return cls(data["classes"])

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> LabelEncoder:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
