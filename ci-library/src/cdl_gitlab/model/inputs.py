"""Training inputs: the labelled train split at a data version, features fitted on it, and a
seeded train/validation split. Used by the rendered trials of both frameworks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.errors import MissingDataError
from cdl_gitlab.features.image import ImageDecoder
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer, as_text, stems
from cdl_gitlab.model.defaults import DEFAULT_IMAGE_SIZE, DEFAULT_VOCAB_SIZE
from cdl_gitlab.model.expconf import data_ref


@dataclass
class TrainingInputs:
    """Feature arrays of the train and validation parts and the state that produced them."""

    features: FeatureState
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    data_version: dict[str, str]

    @property
    def task(self) -> str:
        return self.features.task

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.features.transform.input_shape

    @property
    def n_classes(self) -> int:
        return len(self.features.classes)


def build_features(
    task: str, hparams: dict[str, Any], contents: list[bytes], train_idx: np.ndarray
) -> tuple[TextVectorizer | ImageDecoder, np.ndarray]:
    """The input transform of ``task`` (fitted on the training part) and all items' features."""
    if task == "text":
        stem_lists = [stems(as_text(content)) for content in contents]
        vocab = int(hparams.get("vocab_size", DEFAULT_VOCAB_SIZE))
        vectorizer = TextVectorizer.fit_stems([stem_lists[i] for i in train_idx], vocab)
        return vectorizer, vectorizer.transform_stems(stem_lists)
    size = int(hparams.get("image_size", DEFAULT_IMAGE_SIZE))
    decoder = ImageDecoder(size, size)
    return decoder, decoder.transform(contents)


def split_indices(labels: np.ndarray, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (when every class has two items) train/validation index split."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    try:
        train, val = train_test_split(
            indices, test_size=ratio, random_state=seed, stratify=stratify
        )
    except ValueError:  # too few items per class for a stratified split
        train, val = train_test_split(indices, test_size=ratio, random_state=seed)
    return np.sort(train), np.sort(val)


_CACHE: dict[tuple, TrainingInputs] = {}


def item_fields(item: Any) -> tuple[str, str, bytes]:
    """``(path, label, content)`` of a labelled item (an object with those attributes or a
    ``(path, label, content)`` tuple)."""
    if hasattr(item, "content"):
        return str(item.path), str(item.label), bytes(item.content)
    path, label, content = item
    return str(path), str(label), bytes(content)


def load_training_inputs(
    data_config: dict[str, Any] | None,
    hparams: dict[str, Any],
    settings: Settings | None = None,
) -> TrainingInputs:
    """Load ``train.ref`` of the experiment's ``data`` section (default: the data branch).

    Features are cached per process, data commit, labels and feature settings, so the trials
    of one search share the preprocessing (the Transformation Registry's role locally).
    """
    from cdl_gitlab.data.dataset import load_split

    settings = settings or load_settings()
    task = settings.config.model.task
    split = load_split(settings, "train", ref=data_ref(data_config))
    if not split.items:
        raise MissingDataError(
            f"no labelled train items at {split.version} ({len(split.unlabeled)} without a "
            f"label, {len(split.unknown_labels)} with a label outside model.classes); run "
            "`cdl data pipeline` (folder labels) or import labels with `cdl data labels import`"
        )
    feature_keys = ("vocab_size",) if task == "text" else ("image_size",)
    key = (
        str(settings.root),
        str(split.version),
        str(getattr(split, "labels_version", "")),
        task,
        tuple(hparams.get(name) for name in feature_keys),
        settings.config.training.validation_ratio,
        settings.config.data.split.seed,
    )
    if key in _CACHE:
        return _CACHE[key]
    items = [item_fields(item) for item in split.items]
    labels = LabelEncoder.fit(
        [label for _, label, _ in items], settings.config.model.classes or split.classes
    )
    y = labels.encode(label for _, label, _ in items)
    train_idx, val_idx = split_indices(
        y, settings.config.training.validation_ratio, settings.config.data.split.seed
    )
    contents = [content for _, _, content in items]
    transform, x = build_features(task, hparams, contents, train_idx)
    version = split.version
    inputs = TrainingInputs(
        features=FeatureState(transform, labels),
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_val=x[val_idx],
        y_val=y[val_idx],
        data_version={"repo": version.repo, "branch": version.branch, "commit": version.commit},
    )
    _CACHE.clear()
    _CACHE[key] = inputs
    return inputs
