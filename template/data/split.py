"""Split ``<prefix>-raw`` into ``<prefix>-train`` / ``<prefix>-test`` (``cdl data split`` runs it).

Reproducible: seed and test ratio from cdl.yaml (``data.split``); exact duplicates are
removed before splitting so the test set cannot leak into training; stratified by class.
With ``data.format: idx`` the source's own train/test split is kept (no re-splitting): each
image becomes ``<class-folder>/<index>.png`` in the train or test repo.
"""

from __future__ import annotations

from cdl_gitlab.config import load_settings
from cdl_gitlab.data.script import run_script
from cdl_gitlab.data.split import split
from cdl_gitlab.data.store import open_store


def main() -> None:
    settings = load_settings()
    split(settings, open_store(settings))


if __name__ == "__main__":
    run_script(main)
