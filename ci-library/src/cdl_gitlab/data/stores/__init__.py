"""Versioned ML Data: the ``DataStore`` interface and its backends.

- :mod:`~cdl_gitlab.data.stores.base`: the interface, commit rules and path checks.
- :mod:`~cdl_gitlab.data.stores.local_store`: the local profile's store under ``<state_dir>/data``.
- :mod:`~cdl_gitlab.data.stores.pachyderm_store`: Pachyderm, on the cluster profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.data.stores.base import DEFAULT_BRANCH, DataStore

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings


def open_store(settings: Settings) -> DataStore:
    """The profile's store: the local store under ``<state_dir>/data`` or Pachyderm."""
    if settings.profile == "cluster":
        from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

        return PachydermStore.from_address(settings.pachyderm_address)
    from cdl_gitlab.data.stores.local_store import LocalStore

    return LocalStore(settings.state_dir / "data")


__all__ = ["DEFAULT_BRANCH", "DataStore", "open_store"]
