"""The ``archive`` format: a folder or archive of ``<class>/<file>`` items.

Collect: the source (:mod:`cdl_gitlab.data.sources`) is a folder or a ``.zip`` / ``.tar.gz`` /
``.tgz`` / ``.tar`` archive of ``<class>/<file>`` folders, read safely and one file at a time
by :mod:`cdl_gitlab.data.ingest` (links and special files are never followed or opened,
members are capped by ``data.limits``; every discarded entry is reported with its reason).

Split: each item goes to train or test by its content hash and ``data.split.seed``
(:mod:`cdl_gitlab.data.assignment`): new items never move old ones, an arriving copy of a test
item stays in test. Exact duplicates are removed first; a content found under two classes is
dropped. Both commits carry provenance: the raw commit and the split rule with its parameters.

Labels: each validated item is labelled by its class folder.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.assignment import check_rule, spec_hash
from cdl_gitlab.data.commits import Commit, DataVersion, Provenance
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats.base import CollectResult, DataFormat, SplitResult
from cdl_gitlab.data.ingest import Limits, Staged, stage_source
from cdl_gitlab.data.labels import folder_labels
from cdl_gitlab.data.names import SPLITS, raw_repo, split_repo
from cdl_gitlab.data.sources import configured_source, download, local_path, verify
from cdl_gitlab.data.split_tree import split_tree

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.base import DataStore

log = logging.getLogger(__name__)


@contextlib.contextmanager
def staging(settings: Settings) -> Iterator[Path]:
    """A temporary folder beside the project's state (same file system as the local store)."""
    parent = settings.state_dir / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        yield Path(folder)


def discard_line(staged: Staged, limit: int = 3) -> str:
    """``, discarded 3 (symlink 2, special_file 1; e.g. business/x.txt: symlink)``."""
    if not staged.discard_count:
        return ""
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(staged.reasons().items()))
    examples = ", ".join(f"{d.path}: {d.reason}" for d in staged.discarded[:limit])
    return f", discarded {staged.discard_count} ({counts}; e.g. {examples})"


class ArchiveFormat(DataFormat):
    """``data.format: archive``: ``<class>/<file>`` items, split by ``data.split``."""

    name = "archive"

    def source_path(self) -> Path:
        """The local file or folder to collect from (downloading ``data.source`` if needed),
        checked against ``data.source_sha256`` when it is a file."""
        source = configured_source(self.settings)
        if not source:
            raise DataError(
                "no data source: set data.source or data.mirror in cdl.yaml, or CDL_DATA_MIRROR"
            )
        sha256 = self.settings.source_sha256
        local = local_path(source)
        if local is not None:
            if local.is_file():
                verify(local, sha256, f"data mirror {local}")
            return local
        if source.startswith(("http://", "https://")):
            return download(
                source,
                self.settings.state_dir / "downloads",
                sha256=sha256,
                max_bytes=self.settings.config.data.limits.max_total_bytes,
            )
        raise DataError(f"unsupported data source {source!r}: use http(s)://, file:// or a path")

    def collect(self, store: DataStore) -> CollectResult:
        """Stage the source's items safely (:mod:`cdl_gitlab.data.ingest`), then commit them
        file by file; a refused source commits nothing."""
        path = self.source_path()
        with staging(self.settings) as folder:
            staged = stage_source(path, folder, Limits.from_settings(self.settings))
            if not staged.count:
                raise DataError(f"{path}: no <class>/<file> items found{discard_line(staged)}")
            repo = raw_repo(self.settings)
            store.create_repo(repo, "raw data as collected")
            commit = store.put(
                repo,
                self.settings.config.data.branch,
                folder,
                f"collect {staged.count} files from {path.name}",
            )
        line = f"collect: {staged.count} files -> {repo}@{commit.id[:12]}"
        return CollectResult(commit, (line + discard_line(staged),), tuple(staged.discarded))

    def split(self, store: DataStore, ref: str | None = None, resplit: bool = False) -> SplitResult:
        """Assign each raw item by its content hash (:mod:`cdl_gitlab.data.assignment`)."""
        data = self.settings.config.data
        raw = raw_repo(self.settings)
        source = store.resolve(raw, ref or data.branch)
        check_rule(store.head(split_repo(self.settings, "test"), data.branch), resplit)
        provenance = Provenance(
            inputs=(source.ref,), spec_hash=spec_hash(data.split.seed, data.split.test_ratio)
        )
        commits: dict[str, Commit] = {}
        with staging(self.settings) as folder:
            store.checkout(raw, source.id, folder / "raw")
            counts = split_tree(folder / "raw", folder, data.split.seed, data.split.test_ratio)
            if not counts.train or not counts.test:
                raise DataError(
                    f"split: {counts.raw} raw files gave train {counts.train} and test "
                    f"{counts.test} items ({counts.duplicates} exact duplicates, "
                    f"{counts.conflicts} conflicting duplicates dropped); both sets need "
                    "items: add items to the data source, then run the data pipeline again"
                )
            for name in SPLITS:
                repo = split_repo(self.settings, name)
                store.create_repo(repo, f"{name} split of {raw}")
                commits[name] = store.put(
                    repo,
                    data.branch,
                    folder / name,
                    f"{name} split of {raw}@{source.id[:12]}",
                    provenance,
                )
        line = (
            f"split: {counts.raw} raw files, {counts.duplicates} exact duplicates removed, "
            f"{counts.conflicts} conflicting duplicates dropped -> "
            f"train {counts.train} ({commits['train'].id[:12]}), "
            f"test {counts.test} ({commits['test'].id[:12]})"
        )
        return SplitResult(commits, (line,))

    def label_export(
        self, store: DataStore, validated: Commit, files: dict[str, bytes], split: str
    ) -> list[dict[str, Any]]:
        """Folder-derived labels (dated by the data commit: stable)."""
        created = validated.created or "1970-01-01T00:00:00+00:00"
        return folder_labels(
            files, self.settings.config.model.task, DataVersion.of(validated), created
        )
