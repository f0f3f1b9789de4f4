"""Collection: commit the raw data to ``<prefix>-raw``, in the project's ``data.format``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.data.formats import CollectResult, open_format

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.stores.base import DataStore


def collect(settings: Settings, store: DataStore) -> CollectResult:
    """Collect the source into ``<prefix>-raw`` on ``data.branch`` (a no-op if unchanged)."""
    return open_format(settings).collect(store)
