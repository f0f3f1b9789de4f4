"""Text features of the paper's baseline: Porter-stemmed token counts over a fixed vocabulary."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.features.porter import porter_stemmer
from cdl_gitlab.fsutil import atomic_write_json

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    """NLTK's Porter stemmer, loaded on the first stem (processes that never stem, such as
    ``cdl deploy package``, do not load it)."""
    return porter_stemmer()


@lru_cache(maxsize=200_000)
def _stem(token: str) -> str:
    return _stemmer().stem(token)


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into word tokens (Unicode letters and digits, with inner
    apostrophes: ``don't``)."""
    return _TOKEN.findall(text.lower())


def stems(text: str) -> list[str]:
    """The Porter stems of the tokens of ``text``."""
    return [_stem(token) for token in tokenize(text)]


def as_text(item: str | bytes) -> str:
    """Decode bytes as UTF-8 (latin-1 as a fallback, as some archives mix encodings)."""
    if isinstance(item, str):
        return item
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item.decode("latin-1")


class TextVectorizer:
    """Maps documents to token-count vectors over a fixed vocabulary of stems."""

    kind = "text"

    def __init__(self, vocabulary: Sequence[str]) -> None:
        if not vocabulary:
            raise ValueError("a text vectorizer needs a non-empty vocabulary")
        self.vocabulary = list(vocabulary)
        self._index = {stem: i for i, stem in enumerate(self.vocabulary)}
        if len(self._index) != len(self.vocabulary):
            raise ValueError("vocabulary entries must be unique")

    @classmethod
    def fit(cls, documents: Iterable[str | bytes], max_features: int = 10_000) -> TextVectorizer:
        """The ``max_features`` most frequent stems of ``documents`` (ties broken by stem)."""
        return cls.fit_stems((stems(as_text(document)) for document in documents), max_features)

    @classmethod
    def fit_stems(
        cls, stem_lists: Iterable[Sequence[str]], max_features: int = 10_000
    ) -> TextVectorizer:
        """Like :meth:`fit`, on documents already turned into stems."""
        counts: Counter[str] = Counter()
        for document in stem_lists:
            counts.update(document)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([stem for stem, _ in ranked[:max_features]])

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.size,)

    def transform(self, documents: Sequence[str | bytes]) -> np.ndarray:
        """A float32 array of shape ``(len(documents), vocabulary size)`` of stem counts."""
        return self.transform_stems([stems(as_text(document)) for document in documents])

    def transform_stems(self, stem_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Like :meth:`transform`, on documents already turned into stems."""
        matrix = np.zeros((len(stem_lists), self.size), dtype=np.float32)
        lookup = self._index.get
        for row, document in enumerate(stem_lists):
            columns = np.fromiter(
                map(lookup, document, repeat(-1)), dtype=np.intp, count=len(document)
            )
            columns = columns[columns >= 0]  # -1: a stem outside the vocabulary
            if columns.size:
                matrix[row] = np.bincount(columns, minlength=self.size)
        return matrix

    def to_dict(self) -> dict:
        return {"kind": self.kind, "vocabulary": self.vocabulary}

    @classmethod
    def from_dict(cls, data: dict) -> TextVectorizer:
        return cls(data["vocabulary"])

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TextVectorizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
