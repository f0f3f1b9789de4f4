"""Collect the raw data into the ``<prefix>-raw`` repo (``cdl data collect`` runs this file).

Source: ``CDL_DATA_MIRROR`` or ``data.mirror`` (a local path or file:// URL) if set, else
``data.source`` (downloaded once, with progress). Folders and zip / tar.gz archives of
``<class>/<file>`` items are read; files outside a class folder (README ...) are skipped.
With ``data.format: idx`` (the fashion starter) the four MNIST-style idx files are checked
and committed unchanged instead; ``data.source`` is then their base URL.
For a source of another shape, replace the body of ``main``: it must commit
``<class>/<file>`` items to ``<prefix>-raw``.
"""

from __future__ import annotations

from cdl_gitlab.config import load_settings
from cdl_gitlab.data.collect import collect
from cdl_gitlab.data.script import run_script
from cdl_gitlab.data.store import open_store


def main() -> None:
    settings = load_settings()
    collect(settings, open_store(settings))


if __name__ == "__main__":
    run_script(main)
