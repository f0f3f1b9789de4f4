"""Where a pipeline step finds its inputs and writes its output.

In a Pachyderm worker, input ``<name>`` is mounted at ``/pfs/<name>`` and the output folder
is ``/pfs/out``. The local runner materializes the same tree under a temporary folder and
sets ``CDL_PFS_ROOT`` to it; step code calls ``pfs_path`` and works unchanged in both places.
"""

from __future__ import annotations

import os
from pathlib import Path

PFS_ROOT_ENV = "CDL_PFS_ROOT"


def pfs_root() -> Path:
    return Path(os.environ.get(PFS_ROOT_ENV) or "/pfs")


def pfs_path(name: str) -> Path:
    """The folder of input ``name`` (or ``"out"``, the output folder)."""
    return pfs_root() / name


def input_commit(name: str) -> str:
    """The commit id of input ``name`` (Pachyderm's ``<name>_COMMIT``), or ''."""
    return os.environ.get(f"{name}_COMMIT", "")
