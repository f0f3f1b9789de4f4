"""The train/test split of ``<prefix>-raw`` into ``<prefix>-train`` / ``<prefix>-test``.

How the split is made depends on ``data.format``: the ``archive`` format deduplicates and
assigns each item by its content hash and ``data.split.seed``; the ``idx`` format keeps the
source's own split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.data.formats import SplitResult, open_format

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.base import DataStore


def split(
    settings: Settings, store: DataStore, ref: str | None = None, resplit: bool = False
) -> SplitResult:
    """Split the raw repo at ``ref`` (default: ``data.branch``) and commit both sets;
    ``resplit`` allows replacing a split made by an earlier rule."""
    return open_format(settings).split(store, ref, resplit)
