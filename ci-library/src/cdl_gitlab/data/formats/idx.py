"""The ``idx`` format (``data.format: idx``): the four MNIST-style idx files.

- collect: the four files :data:`FILES` from a local mirror (``CDL_DATA_MIRROR`` /
  ``data.mirror``: a folder or ``file://`` URL; uncompressed copies without ``.gz`` work
  too) or from ``data.source`` (a base URL; downloaded once with progress), each checked by
  :mod:`cdl_gitlab.data.formats.idx_files`, committed unchanged to ``<prefix>-raw``.
- split: the source's own train/test split is kept (no re-splitting). Every image of the raw
  commit becomes ``<class-folder>/<index>.png`` in ``<prefix>-train`` / ``<prefix>-test``,
  with provenance to the raw commit. ``<index>`` is the item's position in its idx file; the
  folder is a file-system-safe slug of the class name (``T-shirt/top`` -> ``t-shirt-top``).
- labels: a Label Studio export built from the idx label file (labeler
  :data:`IDX_LABELER`), with the class names of ``model.classes`` as labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from cdl_gitlab.data.commits import Commit, DataVersion, Provenance
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats import idx_files as idx
from cdl_gitlab.data.formats.base import CollectResult, DataFormat, SplitResult
from cdl_gitlab.data.labels import IDX_LABELER, choice_annotation, task_for
from cdl_gitlab.data.names import SPLITS, raw_repo, split_repo
from cdl_gitlab.data.sources import configured_source, download, local_path

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.base import DataStore

log = logging.getLogger(__name__)

FILES: dict[str, dict[idx.Kind, str]] = {
    "train": {"images": "train-images-idx3-ubyte.gz", "labels": "train-labels-idx1-ubyte.gz"},
    "test": {"images": "t10k-images-idx3-ubyte.gz", "labels": "t10k-labels-idx1-ubyte.gz"},
}
LAYOUT = "<class-folder>/<index>.png"
_ITEM = re.compile(r"^[^/]+/(\d+)\.png$")


def canonical_names() -> list[str]:
    return [name for split in SPLITS for name in FILES[split].values()]


def class_slug(name: str) -> str:
    """A file-system-safe folder name for a class: ``T-shirt/top`` -> ``t-shirt-top``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "class"


def folder_names(classes: list[str]) -> list[str]:
    """One distinct folder per class, in label order."""
    folders = [class_slug(name) for name in classes]
    clashes = sorted({f for f in folders if folders.count(f) > 1})
    if clashes:
        raise DataError(
            f"model.classes: several class names map to the folder(s) {clashes}; "
            "rename the classes so that they differ in letters or digits"
        )
    return folders


def class_names(settings: Settings, labels: np.ndarray, name: str) -> list[str]:
    """``model.classes`` (label value = index), or the label values as names if it is empty."""
    top = int(labels.max(initial=0))
    classes = list(settings.config.model.classes) or [str(v) for v in range(top + 1)]
    if top >= len(classes):
        first = int(np.argmax(labels >= len(classes)))
        raise DataError(
            f"{name}: label value {labels[first]} (item {first}) has no class: "
            f"model.classes names {len(classes)} classes "
            f"(values 0..{len(classes) - 1})"
        )
    return classes


def image_shape(settings: Settings) -> tuple[int, int] | None:
    """Expected (rows, columns) from ``data.validation.image_size`` ([width, height])."""
    size = list(settings.config.data.validation.image_size)
    if not size:
        return None
    width, height = size if len(size) == 2 else size * 2
    return height, width


# ---------------------------------------------------------------- collect
def _member(files: dict[str, Any], name: str) -> str | None:
    """The key of ``name`` in ``files`` (the ``.gz`` name or the uncompressed one)."""
    for candidate in (name, name.removesuffix(".gz")):
        if candidate in files:
            return candidate
    return None


def locate(settings: Settings) -> dict[str, Path]:
    """Local copies of the four files (canonical name -> path), downloading them if needed."""
    source = configured_source(settings)
    if not source:
        raise DataError(
            "no data source: set data.source (a base URL) or data.mirror in "
            "cdl.yaml, or CDL_DATA_MIRROR (a folder with the four idx files)"
        )
    local = local_path(source)
    if local is not None:
        if not local.is_dir():
            raise DataError(
                f"{local}: not a folder; with data.format idx the mirror is a "
                f"folder holding {', '.join(canonical_names())}"
            )
        present = {p.name: p for p in local.iterdir() if p.is_file()}
        found = {name: _member(present, name) for name in canonical_names()}
        missing = [name for name, key in found.items() if key is None]
        if missing:
            raise DataError(
                f"{local}: missing {', '.join(missing)} (the mirror must hold the "
                "four idx files, gzip-compressed or not)"
            )
        return {name: present[key] for name, key in found.items() if key is not None}
    if not source.startswith(("http://", "https://")):
        raise DataError(f"unsupported data source {source!r}: use http(s)://, file:// or a path")
    base = source if source.endswith("/") else source + "/"
    paths: dict[str, Path] = {}
    for name in canonical_names():
        url = base + name
        log.info("collect: %s", url)
        paths[name] = download(url, settings.state_dir / "downloads")
    return paths


# ---------------------------------------------------------------- split (the given one)
def png_bytes(image: np.ndarray) -> bytes:
    """One grayscale image as PNG (deterministic bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def _raw_pair(files: dict[str, bytes], raw: Commit, split: str) -> tuple[str, str]:
    names = []
    for kind in ("images", "labels"):
        key = _member(files, FILES[split][kind])
        if key is None:
            raise DataError(
                f"{raw.repo}@{raw.id[:12]} has no {FILES[split][kind]}: collect "
                "the four idx files first (cdl data collect)"
            )
        names.append(key)
    return names[0], names[1]


def iter_items(
    settings: Settings, files: dict[str, bytes], raw: Commit, split: str
) -> Iterator[tuple[str, bytes]]:
    """``(path, png)`` of every image of ``split`` in the raw files, in idx order."""
    images, labels = _raw_pair(files, raw, split)
    all_labels = idx.read_labels(files[labels], labels)
    folders = folder_names(class_names(settings, all_labels, labels))
    index = 0
    for block, block_labels in idx.iter_pair(
        files[images], files[labels], (images, labels), image_shape(settings)
    ):
        for image, label in zip(block, block_labels, strict=True):
            yield f"{folders[label]}/{index:05d}.png", png_bytes(image)
            index += 1


# ---------------------------------------------------------------- labels from the idx file
def source_raw_commit(settings: Settings, store: DataStore, validated: Commit) -> Commit:
    """The raw commit a validated commit descends from (via provenance), else the raw head."""
    split_names = {split_repo(settings, name) for name in SPLITS}
    raw_name = raw_repo(settings)
    for ref in validated.provenance.inputs:
        if ref.repo in split_names:
            for parent in store.provenance(ref.repo, ref.commit).inputs:
                if parent.repo == raw_name:
                    return store.resolve(raw_name, parent.commit)
    log.warning(
        "%s has no provenance to %s: labels come from its %s head",
        validated.ref,
        raw_name,
        settings.config.data.branch,
    )
    return store.resolve(raw_name, settings.config.data.branch)


class IdxFormat(DataFormat):
    """``data.format: idx``: the four idx files, the source's own train/test split."""

    name = "idx"

    def collect(self, store: DataStore) -> CollectResult:
        """Check the four idx files and commit them unchanged to ``<prefix>-raw``."""
        settings = self.settings
        paths = locate(settings)
        shape = image_shape(settings)
        counts = {}
        for split_name in SPLITS:
            images, labels = (paths[FILES[split_name][kind]] for kind in ("images", "labels"))
            blocks = idx.iter_pair(images, labels, (str(images), str(labels)), shape)
            counts[split_name] = sum(len(block) for block, _ in blocks)
        repo = raw_repo(settings)
        store.create_repo(repo, "raw data as collected: the four idx files")
        # downloads are cached as <hash>-<name>: commit them under their own names
        files = {
            name.removesuffix(".gz") if not path.name.endswith(".gz") else name: path.read_bytes()
            for name, path in paths.items()
        }
        source = configured_source(settings)
        commit = store.put(
            repo,
            settings.config.data.branch,
            files,
            f"collect {len(files)} idx files from {source}",
        )
        line = (
            f"collect: {len(files)} idx files (train {counts['train']}, test {counts['test']} "
            f"images) -> {repo}@{commit.id[:12]}"
        )
        return CollectResult(commit, (line,))

    def split(self, store: DataStore, ref: str | None = None, resplit: bool = False) -> SplitResult:
        """Write the raw commit's train and test images to ``<prefix>-train`` / ``-test``
        (the source's own split: nothing to re-split, ``resplit`` changes nothing)."""
        settings = self.settings
        data = settings.config.data
        raw_name = raw_repo(settings)
        raw = store.resolve(raw_name, ref or data.branch)
        files = store.read_many(raw_name, raw.id)
        params = {
            "format": "idx",
            "layout": LAYOUT,
            "classes": list(settings.config.model.classes),
            "image_size": list(data.validation.image_size),
        }
        spec_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        provenance = Provenance(inputs=(raw.ref,), spec_hash=spec_hash)
        commits: dict[str, Commit] = {}
        digests: dict[str, set[str]] = {}
        lines = []
        for name in SPLITS:
            items = dict(iter_items(settings, files, raw, name))
            digests[name] = {hashlib.sha256(content).hexdigest() for content in items.values()}
            repo = split_repo(settings, name)
            store.create_repo(repo, f"{name} set of {raw_name} (the source's own split)")
            commits[name] = store.put(
                repo,
                data.branch,
                items,
                f"{name} set of {raw_name}@{raw.id[:12]} as PNG",
                provenance,
            )
            lines.append(f"split: {name} {len(items)} images -> {repo}@{commits[name].id[:12]}")
        shared = len(digests["train"] & digests["test"])
        lines.append(
            f"split: data.format idx keeps the source's train/test split of "
            f"{raw_name}@{raw.id[:12]} (no re-splitting); {shared} test image(s) also occur "
            "in train (kept, as published)"
        )
        return SplitResult(commits, tuple(lines))

    def label_export(
        self, store: DataStore, validated: Commit, files: dict[str, bytes], split: str
    ) -> list[dict[str, Any]]:
        """Label each validated ``<folder>/<index>.png`` from the idx label file of the raw
        commit it came from (dated by that commit: stable)."""
        settings = self.settings
        raw = source_raw_commit(settings, store, validated)
        name = FILES[split]["labels"]
        raw_files = {key: b"" for key in store.list_files(raw.repo, raw.id)}
        key = _member(raw_files, name)
        if key is None:
            raise DataError(f"{raw.repo}@{raw.id[:12]} has no {name}")
        labels = idx.read_labels(store.read(raw.repo, raw.id, key), key)
        classes = class_names(settings, labels, key)
        folders = folder_names(classes)
        version = DataVersion.of(validated)
        created = raw.created or "1970-01-01T00:00:00+00:00"
        export = []
        for path in sorted(files):
            match = _ITEM.match(path)
            if match is None or int(match.group(1)) >= len(labels):
                log.warning("%s: not an item of %s (%s): left unlabelled", path, key, LAYOUT)
                continue
            index = int(match.group(1))
            label = int(labels[index])
            if PurePosixPath(path).parent.name != folders[label]:
                log.warning("%s: folder differs from its idx label %r", path, classes[label])
            entry = task_for(path, files[path], "image", version)
            entry["data"]["idx"] = {"file": key, "index": index}
            entry["annotations"] = [
                choice_annotation(entry["id"], IDX_LABELER, created, classes[label])
            ]
            export.append(entry)
        return export
