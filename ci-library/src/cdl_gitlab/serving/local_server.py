"""Local serving: the real model server on localhost, in its own process group.

``serve`` packages the version if needed, starts the server of ``serving.engine`` with the
artifact and the scoring store in its environment (``seldon-core-microservice``; or MLServer
with the CDL runtime, see :mod:`cdl_gitlab.serving.mlserver_local`), waits for its readiness
route (``/health/ping``; ``/v2/models/<name>/ready``) and records a pid file under the state
folder; ``stop`` ends the whole process group (SIGINT, SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from cdl_gitlab.errors import CDLError
from cdl_gitlab.fsutil import atomic_write_json

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

SERVER_FILE = "serve.json"
DEPLOYMENT_DIR = "deployment"
LOG_TAIL_LINES = 40


class ServeError(CDLError):
    """The local model server cannot start, is not running, or answered with an error."""


@dataclass
class ServerInfo:
    """What the pid file records about a running local server."""

    pid: int
    port: int
    metrics_port: int
    model: str
    version: int
    artifact: str
    log: str
    started: float
    engine: str = "seldon"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def predict_url(self) -> str:
        if self.engine == "mlserver":
            return f"{self.url}/v2/models/{self.model}/infer"
        return predictions_url(self.url)


# Gunicorn processes, not threads, are what use a second core (the GIL serialises threads).
# One thread per worker makes gunicorn's sync workers: a worker takes a connection only when
# it is idle, so two clients are served by two workers. With threads (gthread) one worker may
# accept both keep-alive connections while the other idles. benchmarks/serving.py, 2 cores,
# 2 clients, quiet machine: 2 x 1 served 400-521 requests/s (four runs), 2 x 2 served 440-487
# or, when one worker held both clients, 222-247 (five runs).
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 1


def model_class_name(model_name: str) -> str:
    """The wrapper's class (and module) name: ``text-classifier`` -> ``TextClassifier``.

    The template names ``deployment/<ModelClass>.py`` with the same expression.
    """
    return model_name.title().replace("-", "")


def wrapper_dir(settings: Settings) -> Path:
    """The project's ``deployment/`` folder, checked to hold the rendered wrapper."""
    folder = settings.root / DEPLOYMENT_DIR
    module = folder / f"{model_class_name(settings.config.model.name)}.py"
    if not module.is_file():
        raise ServeError(
            f"{module} is missing: the Seldon wrapper is rendered by the CDL template "
            "(run `copier update`, or check model.name in cdl.yaml)"
        )
    return folder


def microservice_command(tensorflow: bool = True) -> list[str]:
    """``seldon-core-microservice`` run by this interpreter, so the server imports the same
    ``cdl_gitlab`` as the command that starts it (not whichever one a script on PATH sees).

    ``tensorflow=False`` (models that do not need it): through
    :mod:`cdl_gitlab.serving.seldon_launch`, so seldon-core does not import TensorFlow at
    start-up where it is installed."""
    if importlib.util.find_spec("seldon_core") is None:
        raise ServeError(
            "seldon-core-microservice not found: install the serving extra (pip install "
            "'cdl-gitlab[serve]')"
        )
    module = "seldon_core.microservice" if tensorflow else "cdl_gitlab.serving.seldon_launch"
    return [sys.executable, "-m", module]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the kernel reports free right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit): ")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log, preceded by the exception messages logged
    before them: with several workers, one worker's error can scroll out of the tail behind
    the others' shutdown messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    earlier = [line for line in all_lines[:-lines] if _EXCEPTION_LINE.match(line)]
    errors = [line for line in dict.fromkeys(earlier) if line not in tail][-5:]
    if not errors:
        return "\n".join(tail)
    return "\n".join(["errors logged earlier:", *errors, "...", *tail])


def start_server(
    class_name: str,
    cwd: Path,
    artifact_dir: Path,
    *,
    port: int,
    metrics_port: int,
    log_path: Path,
    scoring_url: str | None,
    workers: int = DEFAULT_WORKERS,
    threads: int = DEFAULT_THREADS,
    grpc_port: int | None = None,
    tensorflow: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``seldon-core-microservice`` in a new session (its own process group);
    ``tensorflow=False`` for models that do not need TensorFlow (see
    :func:`microservice_command`)."""
    check_ports_free(port, metrics_port, *([grpc_port] if grpc_port else []))
    command = [
        *microservice_command(tensorflow),
        class_name,
        "--service-type",
        "MODEL",
        "--http-port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "INFO",
    ]
    if grpc_port:
        command += ["--grpc-port", str(grpc_port), "--grpc-workers", "1"]
    else:
        command += ["--grpc-workers", "0"]
    return launch(command, cwd, log_path, scoring_url, {"CDL_ARTIFACT_DIR": str(artifact_dir)})


def start_mlserver(
    settings: Settings,
    model: str,
    version: int,
    artifact_dir: Path,
    *,
    port: int,
    metrics_port: int,
    log_path: Path,
    scoring_url: str | None,
    grpc_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """Write MLServer's settings under the state folder and start it with the CDL guard in a
    new session (its own process group). Its gRPC port is ``grpc_port`` or a free one (MLServer
    always serves gRPC); its metrics are served on ``metrics_port``."""
    from cdl_gitlab.serving import mlserver_local

    grpc = grpc_port or free_port()
    check_ports_free(port, metrics_port, grpc)
    try:
        command_line = mlserver_local.server_command(
            mlserver_local.find_mlserver(settings.root), settings.state_dir / "mlserver"
        )
    except mlserver_local.MLServerNotFound as exc:
        raise ServeError(str(exc)) from None
    folder = settings.state_dir / "mlserver"
    mlserver_local.write_settings(
        folder,
        model=model,
        version=version,
        artifact=artifact_dir,
        port=port,
        grpc_port=grpc,
        metrics_port=metrics_port,
    )
    return launch(command_line, folder, log_path, scoring_url)


def check_ports_free(*ports: int) -> None:
    """ServeError naming the first of ``ports`` that is taken."""
    for wanted in ports:
        if not port_free(wanted):
            raise ServeError(
                f"port {wanted} is in use (another model server? try `cdl deploy stop`, "
                "or choose --port)"
            )


def launch(
    command: list[str],
    cwd: Path,
    log_path: Path,
    scoring_url: str | None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a model server's ``command`` in a new session (its own process group, so that
    :func:`stop_group` ends all its workers), output appended to ``log_path``; the scoring
    store is ``scoring_url`` (none: the server stores no scoring data)."""
    from cdl_gitlab.scoring import SCORING_URL_ENV  # (sqlalchemy: not at every cdl start)

    env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    env.pop(SCORING_URL_ENV, None)
    if scoring_url:
        env[SCORING_URL_ENV] = scoring_url
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_ready(
    process: subprocess.Popen[bytes],
    port: int,
    timeout: float,
    log_path: Path,
    path: str = "/health/ping",
) -> None:
    """Poll ``path`` (Seldon's ``/health/ping``, MLServer's ``/v2/models/<name>/ready``) until
    it answers 200; ServeError with the log tail if the server dies."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}{path}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(
                f"the model server exited with code {process.returncode} during start-up; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    stop_group(process.pid)
    raise ServeError(
        f"the model server did not answer {url} within {timeout:.0f} s (stopped it); "
        f"last lines of {log_path}:\n{log_tail(log_path)}"
    )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies count as gone: a server whose
    ``cdl deploy serve`` exited is an orphan, reaped by PID 1, and a container's or VM's init
    may reap late or never (the stopped leader then stays in the group as a zombie, and a
    group-wide ``kill(0)`` keeps succeeding)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


STOP_GRACE = 0.6
"""Seconds ``stop_group`` gives the server before it kills what is left of it."""


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _wait_group(pgid: int, until: float) -> bool:
    """Reap the leader if it is our child; True once no process of the group is left."""
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(0.01)


def stop_group(pgid: int, grace: float = STOP_GRACE) -> bool:
    """Stop the server whose process group is ``pgid``: every process of it at once.

    SIGINT first: gunicorn's masters and workers take it as a quick shutdown (a worker exits
    between requests and its exit handler flushes the scoring data, which the store was
    opened for at start-up). Seldon's processes then linger for seconds in the teardown of
    its multiprocessing metrics manager (which ignores SIGINT), so what is left gets SIGTERM
    after half of ``grace`` and SIGKILL after ``grace``. True if nothing needed SIGKILL.
    """
    started = time.monotonic()
    _signal_group(pgid, signal.SIGINT)
    if _wait_group(pgid, started + grace / 2):
        return True
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group(pgid, started + grace):
        return True
    _signal_group(pgid, signal.SIGKILL)
    _wait_group(pgid, time.monotonic() + 2.0)
    return False


def server_file(settings: Settings) -> Path:
    return settings.state_dir / SERVER_FILE


def read_server(settings: Settings) -> ServerInfo | None:
    """The recorded server, or None (a stale record of a dead server is removed)."""
    path = server_file(settings)
    try:
        info = ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if not _group_alive(info.pid):
        path.unlink(missing_ok=True)
        return None
    return info


def serve(
    settings: Settings,
    version: int | None = None,
    port: int | None = None,
    metrics_port: int | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    threads: int = DEFAULT_THREADS,
    grpc_port: int | None = None,
) -> tuple[ServerInfo, subprocess.Popen[bytes]]:
    """Package ``version`` if needed, start its server, wait for it, write the pid file."""
    from cdl_gitlab.deploy.package import ensure_packaged
    from cdl_gitlab.scoring import SCORING_URL_ENV, scoring_url

    running = read_server(settings)
    if running is not None:
        raise ServeError(
            f"a model server is already running ({running.model} v{running.version} on "
            f"{running.url}, pid {running.pid}): `cdl deploy stop` first"
        )
    engine = settings.config.serving.engine
    if engine == "mlserver" and settings.config.model.framework == "keras":
        raise ServeError(
            "serving.engine mlserver serves PyTorch models: MLServer 1.7 needs protobuf>=5, "
            "TensorFlow 2.15 protobuf<5 (use serving.engine seldon for Keras models)"
        )
    folder = wrapper_dir(settings) if engine == "seldon" else None
    artifact, manifest = ensure_packaged(settings, version)
    deployment = settings.config.deployment
    port = port or deployment.local_port
    metrics_port = metrics_port or deployment.metrics_port
    log_path = settings.state_dir / "logs" / f"serve-{port}.log"
    url = os.environ.get(SCORING_URL_ENV) or scoring_url(settings)
    if folder is not None:
        process = start_server(
            model_class_name(manifest.name),
            folder,
            artifact,
            port=port,
            metrics_port=metrics_port,
            log_path=log_path,
            scoring_url=url,
            workers=workers,
            threads=threads,
            grpc_port=grpc_port,
            # PyTorch models never need TensorFlow; others (and artifacts that do not say) may
            tensorflow=manifest.data.get("framework") != "pytorch",
        )
        ready_path = "/health/ping"
    else:
        process = start_mlserver(
            settings,
            manifest.name,
            manifest.version,
            artifact,
            port=port,
            metrics_port=metrics_port,
            log_path=log_path,
            scoring_url=url,
            grpc_port=grpc_port,
        )
        ready_path = f"/v2/models/{manifest.name}/ready"
    try:
        wait_ready(process, port, deployment.startup_timeout, log_path, ready_path)
    except BaseException:
        stop_group(process.pid)
        raise
    info = ServerInfo(
        pid=process.pid,
        port=port,
        metrics_port=metrics_port,
        model=manifest.name,
        version=manifest.version,
        artifact=str(artifact),
        log=str(log_path),
        started=time.time(),
        engine=engine,
    )
    atomic_write_json(server_file(settings), asdict(info))
    return info, process


def stop(settings: Settings) -> ServerInfo | None:
    """Stop the recorded server (whole process group); None if none was running."""
    info = read_server(settings)
    if info is not None:
        stop_group(info.pid)
    server_file(settings).unlink(missing_ok=True)
    return info


def post_json(url: str, payload: Any, timeout: float = 30.0) -> tuple[int, Any]:
    """POST ``payload`` as JSON; returns the status and the decoded answer (errors too)."""
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode("utf-8", errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise ServeError(f"cannot reach the model server at {url}: {exc}") from exc


def predictions_url(base: str) -> str:
    return f"{base.rstrip('/')}/api/v1.0/predictions"
