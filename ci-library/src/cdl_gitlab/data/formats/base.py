"""The ``DataFormat`` interface: how one shape of raw data is collected, split and labelled.

A project names its format once, in ``data.format``; :func:`cdl_gitlab.data.formats.open_format`
builds the matching class and every step asks it, so no step branches on the format name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.commits import Commit
    from cdl_gitlab.data.ingest import Discard
    from cdl_gitlab.data.stores.base import DataStore


@dataclass(frozen=True)
class CollectResult:
    """The ``<prefix>-raw`` commit a collection made, and what to tell the user about it."""

    commit: Commit
    lines: tuple[str, ...] = ()
    discarded: tuple[Discard, ...] = ()

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class SplitResult:
    """The ``<prefix>-train`` / ``<prefix>-test`` commits of a split, and its summary lines."""

    commits: dict[str, Commit]
    lines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "\n".join(self.lines)


class DataFormat(abc.ABC):
    """One raw-data shape: collect into ``<prefix>-raw``, split into train/test, label."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def collect(self, store: DataStore) -> CollectResult:
        """Commit the source to ``<prefix>-raw`` on ``data.branch`` (a no-op if unchanged)."""

    @abc.abstractmethod
    def split(self, store: DataStore, ref: str | None = None, resplit: bool = False) -> SplitResult:
        """Split the raw commit at ``ref`` (default: ``data.branch``) into train and test;
        ``resplit`` allows replacing a split made by an earlier rule."""

    @abc.abstractmethod
    def label_export(
        self, store: DataStore, validated: Commit, files: dict[str, bytes], split: str
    ) -> list[dict[str, Any]]:
        """A Label Studio export labelling the validated ``files`` of ``split``."""
