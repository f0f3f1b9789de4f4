"""Local serving with MLServer (``serving.engine: mlserver``): its environment, its settings
files and its start command. Supervision (readiness, pid file, stop) is
:mod:`cdl_gitlab.serving.local_server`'s.

MLServer 1.7 cannot share an environment with seldon-core 1.18's pins, so it runs from its own
environment; its Python is found from the ``mlserver`` executable, in this order:

1. ``$CDL_MLSERVER`` (the path of an ``mlserver`` executable);
2. ``<project>/.venv-mlserver/bin/mlserver`` (what the rendered project's ``make setup``
   creates when ``serving_engine`` is ``mlserver``);
3. ``mlserver`` on ``PATH``.

That environment needs ``cdl-gitlab`` too (the runtime and the guard run inside MLServer).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cdl_gitlab.errors import CDLError
from cdl_gitlab.fsutil import atomic_write_json

MLSERVER_ENV = "CDL_MLSERVER"
PROJECT_VENV = ".venv-mlserver"
RUNTIME = "cdl_gitlab.serving.mlserver_runtime.CDLRuntime"
GUARD_MODULE = "cdl_gitlab.serving.mlserver_guard"


class MLServerNotFound(CDLError):
    """No MLServer environment was found."""


def find_mlserver(project_root: Path) -> Path:
    """The ``mlserver`` executable (see the module docstring for the order)."""
    explicit = os.environ.get(MLSERVER_ENV)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise MLServerNotFound(f"${MLSERVER_ENV}={explicit} is not an executable")
        return path
    local = project_root / PROJECT_VENV / "bin" / "mlserver"
    if local.is_file():
        return local
    found = shutil.which("mlserver")
    if found:
        return Path(found)
    raise MLServerNotFound(
        "MLServer not found: run `make setup` (serving_engine mlserver creates "
        f"{PROJECT_VENV}), or set ${MLSERVER_ENV} to an mlserver executable of an environment "
        "with mlserver==1.7.1 and cdl-gitlab[serve-mlserver]"
    )


def server_command(mlserver: Path, folder: Path) -> list[str]:
    """``mlserver start <folder>`` with the CDL guard, run by the environment's Python."""
    python = mlserver.parent / "python"
    if not python.exists():
        raise MLServerNotFound(f"{mlserver}: no python beside it in {mlserver.parent}")
    return [str(python), "-m", GUARD_MODULE, str(folder)]


def write_settings(
    folder: Path,
    *,
    model: str,
    version: int,
    artifact: Path,
    port: int,
    grpc_port: int,
    metrics_port: int | None,
    host: str = "127.0.0.1",
) -> None:
    """``settings.json`` and ``<model>/model-settings.json`` (atomic writes) in ``folder``.

    One process (``parallel_workers: 0``: the guard and the runtime share it), metrics off
    unless ``metrics_port`` is given.
    """
    settings: dict[str, Any] = {
        "debug": False,
        "host": host,
        "http_port": port,
        "grpc_port": grpc_port,
        "parallel_workers": 0,
        "metrics_endpoint": "/metrics" if metrics_port else None,
        "load_models_at_startup": True,
        "environments_dir": str(folder / ".envs"),
        "metrics_dir": str(folder / ".metrics"),
    }
    if metrics_port:
        settings["metrics_port"] = metrics_port
    atomic_write_json(folder / "settings.json", settings)
    atomic_write_json(
        folder / model / "model-settings.json",
        model_settings(model, version, str(artifact)),
    )


def model_settings(model: str, version: int, artifact: str) -> dict[str, Any]:
    """The ``model-settings.json`` of the CDL runtime serving ``artifact``."""
    return {
        "name": model,
        "implementation": RUNTIME,
        "parameters": {"uri": artifact, "version": str(version)},
    }


def v2_payload(texts: list[str]) -> dict[str, Any]:
    """A V2 inference request for a text model."""
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def infer_url(base: str, model: str) -> str:
    return f"{base.rstrip('/')}/v2/models/{model}/infer"


def ready_url(base: str, model: str) -> str:
    return f"{base.rstrip('/')}/v2/models/{model}/ready"


def main(argv: list[str] | None = None) -> int:
    """``python -m cdl_gitlab.serving.mlserver_local <folder> <artifact>``: write the settings
    of a serving image (all interfaces, MLServer's ports 8080/8081, metrics on 8082) for the
    artifact's model; the image then runs ``python -m cdl_gitlab.serving.mlserver_guard
    <folder>``."""
    import argparse

    from cdl_gitlab.deploy.artifact import read_manifest

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--metrics-port", type=int, default=8082)
    args = parser.parse_args(argv)
    manifest = read_manifest(args.artifact)
    write_settings(
        args.folder,
        model=manifest.name,
        version=manifest.version,
        artifact=args.artifact,
        port=args.port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port or None,
        host=args.host,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
