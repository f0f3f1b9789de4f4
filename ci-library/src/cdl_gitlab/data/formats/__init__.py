"""Raw-data formats, chosen once from ``data.format``.

- ``archive`` (:class:`~cdl_gitlab.data.formats.archive.ArchiveFormat`): a folder, zip or tar
  of ``<class>/<file>`` items, de-duplicated and split by ``data.split``; labels from folders.
- ``idx`` (:class:`~cdl_gitlab.data.formats.idx.IdxFormat`): the four MNIST-style idx files;
  the source's own train/test split is kept; labels from the idx label files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats.archive import ArchiveFormat
from cdl_gitlab.data.formats.base import CollectResult, DataFormat, SplitResult
from cdl_gitlab.data.formats.idx import IdxFormat

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

FORMATS: dict[str, type[DataFormat]] = {cls.name: cls for cls in (ArchiveFormat, IdxFormat)}


def open_format(settings: Settings) -> DataFormat:
    """The format class named by ``data.format``, bound to ``settings``."""
    name = settings.config.data.format
    try:
        return FORMATS[name](settings)
    except KeyError:
        raise DataError(
            f"data.format: unknown format {name!r} (use one of {', '.join(sorted(FORMATS))})"
        ) from None


__all__ = ["FORMATS", "CollectResult", "DataFormat", "SplitResult", "open_format"]
