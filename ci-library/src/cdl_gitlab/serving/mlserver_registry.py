"""The MLServer runtimes loaded in this process, by model name, for the request guard.

A module of its own: MLServer reloads a runtime's module when it loads the model
(``importlib.reload``), which would replace a registry kept there.
"""

from __future__ import annotations

from typing import Any

RUNTIMES: dict[str, Any] = {}
"""Model name -> its loaded :class:`~cdl_gitlab.serving.mlserver_runtime.CDLRuntime`."""
