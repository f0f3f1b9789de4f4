"""Entry points of the programs a project runs outside ``cdl``: the ``/pfs`` steps of its
pipeline specs (``data/validate.py``, ``data/store_labels.py``) and off-cluster training
(``python3 -m model.<entrypoint>``). They print the step's result; a ``CDLError`` becomes
one ``cdl: error: ...`` line on stderr and the error's exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.logs import setup_logging


def run_script(step: Callable[[], Any]) -> None:
    """Run ``step`` with CDL logging and print its result (if any) to stdout."""
    setup_logging()
    try:
        result = step()
    except CDLError as exc:
        print(f"cdl: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if result is not None:
        print(result)


def train_from_cli() -> None:
    """Off-cluster ``python3 -m model.<entrypoint>``: the same as ``cdl model train``."""

    def train() -> str | None:
        from cdl_gitlab.config import load_settings
        from cdl_gitlab.model.train import resolve_config, train_local

        settings = load_settings()
        config = resolve_config(settings, None, settings.config.training.config)
        version = train_local(settings, config).version
        return None if version is None else f"registered {version.model} v{version.version}"

    run_script(train)
