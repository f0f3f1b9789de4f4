"""A real MLflow tracking server for the tests, and a recording proxy in front of it.

The server is the full ``mlflow`` package of ``.venv-mlflow`` (created by
``scripts/install-ci-tools.sh``: its pins conflict with the training stack), started on
127.0.0.1 in its own process group with a SQLite or PostgreSQL backend store and proxied
artifacts in a temporary folder.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from fakes.loopback import LoopbackHTTPFake

REPO = Path(__file__).resolve().parents[2]
MLFLOW_BIN = Path(os.environ.get("CDL_MLFLOW_VENV", REPO / ".venv-mlflow")) / "bin" / "mlflow"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, workdir: Path, timeout: float = 180.0) -> Iterator[str]:
    """Run ``mlflow server`` with ``backend_store_uri``; yields its URL, stops it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (workdir / "mlflow-server.log").open("wb")
    process = subprocess.Popen(
        [
            str(MLFLOW_BIN),
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            str(workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited ({process.returncode}): "
                    + (workdir / "mlflow-server.log").read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer /health within {timeout} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


class RecordingProxy(LoopbackHTTPFake):
    """Forwards every request to ``target`` and records ``(method, path)`` (no query)."""

    thread_name = "recording-proxy"

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = urlsplit(target)
        self.calls: list[tuple[str, str]] = []

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        self.calls.append((handler.command, urlsplit(handler.path).path))
        headers = {
            key: value
            for key, value in handler.headers.items()
            if key.lower() not in ("host", "connection", "content-length", "transfer-encoding")
        }
        connection = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=120)
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            handler.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("connection", "content-length", "transfer-encoding"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            connection.close()
