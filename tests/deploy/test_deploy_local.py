"""Local serving life cycle: clear start-up errors, foreground Ctrl-C, process groups."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest

from cdl_gitlab.serving import local_server
from cdl_gitlab.serving.local_server import ServeError


def test_port_in_use_is_refused_before_starting(text_project) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} is in use"):
            local_server.serve(text_project, 1, port, local_server.free_port())
    assert local_server.read_server(text_project) is None


def test_missing_wrapper_is_a_clear_error(text_project) -> None:
    (text_project.root / "deployment" / "NewsDemo.py").unlink()
    with pytest.raises(ServeError, match=r"NewsDemo\.py is missing"):
        local_server.serve(text_project, 1, local_server.free_port(), local_server.free_port())


def test_class_name_scheme() -> None:
    assert local_server.model_class_name("news") == "News"
    assert local_server.model_class_name("news-classifier") == "NewsClassifier"
    assert local_server.model_class_name("bbc-news2") == "BbcNews2"


def test_predict_payloads(tmp_path: Path) -> None:
    from cdl_gitlab.cli.deploy_cmd import _payload

    assert _payload(("a", "b"), None, "seldon") == {"data": {"ndarray": ["a", "b"]}}
    raw = tmp_path / "r.json"
    raw.write_text(json.dumps({"strData": "x"}))
    assert _payload((), raw, "seldon") == {"strData": "x"}
    raw.write_text(json.dumps([[0.0, 1.0]]))
    assert _payload((), raw, "seldon") == {"data": {"ndarray": [[0.0, 1.0]]}}
    # serving.engine mlserver: V2 inference requests
    text = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    assert _payload(("a", "b"), None, "mlserver") == {"inputs": [text]}
    image = {"name": "image", "shape": [1, 2], "datatype": "FP64", "data": [0.0, 1.0]}
    assert _payload((), raw, "mlserver") == {"inputs": [image]}
    raw.write_text(json.dumps([["a", 1]]))
    with pytest.raises(click.BadParameter):
        _payload((), raw, "mlserver")


@pytest.mark.slow
def test_server_that_dies_reports_its_log(text_project) -> None:
    """A tampered artifact fails the worker's checksum check: the error shows the log tail."""
    from cdl_gitlab.deploy.package import ensure_packaged

    artifact, _ = ensure_packaged(text_project, 1)
    (artifact / "classes.json").write_text('["x", "y", "z"]')
    with pytest.raises(ServeError) as info:
        _serve_tampered(text_project, artifact)
    message = str(info.value)
    assert "exited with code" in message or "did not answer" in message
    assert "classes.json does not match its checksum" in message
    assert local_server.read_server(text_project) is None


def test_log_tail_keeps_an_error_that_scrolled_out_of_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    noise = [f"[INFO] worker {i} exiting" for i in range(60)]
    lines = [
        "Traceback (most recent call last):",
        "cdl_gitlab.deploy.artifact.ArtifactError: classes.json does not match its checksum",
        *noise,
    ]
    log.write_text("\n".join(lines) + "\n")
    excerpt = local_server.log_tail(log, lines=10).splitlines()
    assert excerpt[:2] == [
        "errors logged earlier:",
        "cdl_gitlab.deploy.artifact.ArtifactError: classes.json does not match its checksum",
    ]
    assert excerpt[-10:] == noise[-10:]
    log.write_text("\n".join(noise) + "\n")
    assert local_server.log_tail(log, lines=10).splitlines() == noise[-10:]
    assert local_server.log_tail(tmp_path / "missing.log") == "(no server log)"


def _serve_tampered(settings, artifact: Path) -> None:
    process = local_server.start_server(
        "NewsDemo",
        settings.root / "deployment",
        artifact,
        port=local_server.free_port(),
        metrics_port=local_server.free_port(),
        log_path=settings.state_dir / "logs" / "bad.log",
        scoring_url=None,
    )
    try:
        local_server.wait_ready(
            process, _port_of(process), 90, settings.state_dir / "logs" / "bad.log"
        )
    finally:
        local_server.stop_group(process.pid, grace=5)


def _port_of(process: subprocess.Popen) -> int:
    argv = process.args
    return int(argv[argv.index("--http-port") + 1])


@pytest.mark.slow
def test_foreground_serve_stops_cleanly_on_ctrl_c(text_project) -> None:
    port, metrics = local_server.free_port(), local_server.free_port()
    script = (
        "import sys; from cdl_gitlab.cli.app import AppContext; "
        "from cdl_gitlab.cli.deploy_cmd import deploy; "
        "deploy.main(sys.argv[1:], obj=AppContext(None, None), standalone_mode=True)"
    )
    env = {**os.environ, "CDL_CONFIG": str(text_project.root / "cdl.yaml")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "serve",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics),
            "--foreground",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ping", timeout=2):
                    ready = local_server.read_server(text_project) is not None  # pid file written
            except OSError:
                pass
            if ready:
                break
            time.sleep(0.3)
        assert ready, process.stdout.read() if process.poll() is not None else "not ready"
        info = local_server.read_server(text_project)
        assert info.port == port
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "stopped" in output
        assert not local_server._group_alive(info.pid)
        assert local_server.read_server(text_project) is None
    finally:
        if process.poll() is None:  # Ctrl-C also stops a server that is still starting
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        local_server.stop(text_project)


def _python(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_seldon_core_started_for_pytorch_does_not_import_tensorflow() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: nothing to hide")
    found = _python(
        "import importlib.util, json, sys\n"
        "from cdl_gitlab.serving.seldon_launch import import_seldon_without_tensorflow\n"
        "import_seldon_without_tensorflow()\n"
        "from seldon_core import imports_helper, utils\n"
        "print(json.dumps({'tf_present': imports_helper._TF_PRESENT,\n"
        "    'tf_loaded': 'tensorflow' in sys.modules,\n"
        "    'tf_importable': importlib.util.find_spec('tensorflow') is not None}))\n"
    )
    assert found == {"tf_present": False, "tf_loaded": False, "tf_importable": True}
    assert local_server.microservice_command(tensorflow=False)[-1] == (
        "cdl_gitlab.serving.seldon_launch"
    )
    assert local_server.microservice_command()[-1] == "seldon_core.microservice"
