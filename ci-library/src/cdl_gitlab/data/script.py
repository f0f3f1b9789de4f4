"""Entry point helper for the project's data scripts: CDL errors become one line + exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.logs import setup_logging


def run_script(step: Callable[[], Any]) -> None:
    """Run ``step`` with CDL logging; a ``CDLError`` prints ``cdl: error: ...`` and exits."""
    setup_logging()
    try:
        step()
    except CDLError as exc:
        print(f"cdl: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
