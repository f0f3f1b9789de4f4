"""Clean and validate one split: the step of the ``*-train-validate`` and ``*-test-validate``
pipelines.

Reads ``/pfs/data`` (``$CDL_PFS_ROOT/data`` under ``cdl data run``) and writes the kept items
plus ``summary.json`` (counts and the reason for every discarded item) to ``/pfs/out``. The
rules come from cdl.yaml (``model.task``, ``data.validation``); add project-specific checks
to ``extra_check``.
"""

from __future__ import annotations

from cdl_gitlab.cli.scripts import run_script
from cdl_gitlab.data.steps.validate import run_step


def extra_check(path: str, content: bytes) -> str | None:
    """A discard reason for an item the generic rules keep, or None to keep it."""
    return None


if __name__ == "__main__":
    run_script(lambda: run_step("data", extra_check))
