"""Logging set-up shared by the CLI and the jobs."""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0) -> None:
    """INFO by default, DEBUG with ``-v``, or the level named by ``$CDL_LOG_LEVEL``."""
    level_name = os.environ.get("CDL_LOG_LEVEL")
    if level_name:
        level = logging.getLevelName(level_name.upper())
        if not isinstance(level, int):
            level = logging.INFO
    else:
        level = logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", force=True)
    # Third-party libraries are chatty at INFO; keep them at WARNING unless asked.
    for noisy in ("urllib3", "determined", "matplotlib", "PIL", "filelock", "optuna"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
