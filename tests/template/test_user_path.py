"""The user's path, with nothing preset: `copier copy` to a relative destination outside this
repository -> the project's own `make setup` -> `make pipeline` -> `make serve` -> a
prediction over HTTP -> `make stop`.

`make setup` builds the project's own virtual environment (torch's CPU wheel, then the CDL
library from the local template path that `.copier-answers.yml` records; pip reaches the
package index): slow, so marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from rendering import GIT_IDENTITY, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "ci"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "use_cases"))

from cdl_ci_harness import tiny_settings
from news_corpus import write_bbc_zip

REPO_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def user_environment(mirror: Path) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no virtual environment, no CDL_*
    variable but the data mirror, and this repository's .venv not on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not key.startswith("CDL_")
    }
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", "").split(os.pathsep)
        if part and Path(part).resolve() != REPO_BIN.resolve()
    )
    env["CDL_DATA_MIRROR"] = str(mirror)
    # a generated stand-in, not the archive the news starter pins: name its own hash
    env["CDL_DATA_SHA256"] = hashlib.sha256(mirror.read_bytes()).hexdigest()
    env.update(GIT_IDENTITY)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return output


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def predict_over_http(port: int, text: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1.0/predictions",
        data=json.dumps({"data": {"ndarray": [text]}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.slow
def test_copy_setup_pipeline_serve_predict_stop(tmp_path: Path):
    mirror = write_bbc_zip(tmp_path / "bbc-fulltext.zip")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    env = user_environment(mirror)

    # 1. The README's command, with a relative destination, from a fresh working directory.
    run(
        [
            str(REPO_BIN / "copier"),
            "copy",
            "--trust",
            "--defaults",
            "--vcs-ref",
            "HEAD",
            "-d",
            "project_name=News desk",
            "-d",
            "starter=news",
            str(REPO_ROOT),
            "news-desk",
        ],
        cwd=workspace,
        env=env,
    )
    project = workspace / "news-desk"
    assert git(project, "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == str(REPO_ROOT)

    # A developer's first commit on dev: settings for the tiny dataset, free local ports.
    tiny_settings(project)
    port = free_port()
    config_path = project / "cdl.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["deployment"]["local_port"] = port
    config["deployment"]["metrics_port"] = free_port()
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    git(project, "commit", "--quiet", "-am", "Tiny dataset settings")

    # 2. The project's own set-up: nothing preset, the library from the recorded template.
    setup = run(["make", "setup"], cwd=project, env=env, timeout=3000)
    assert f"cdl-gitlab from the local template {REPO_ROOT}" in setup
    installed = run([str(project / ".venv" / "bin" / "cdl"), "--version"], project, env)
    assert installed.strip(), "cdl --version printed nothing"

    # 3. The pipelines, then serving and one prediction over HTTP.
    run(["make", "pipeline"], cwd=project, env=env)
    assert (project / "reports" / "junit.xml").is_file()
    run(["make", "serve"], cwd=project, env=env)
    try:
        answer = predict_over_http(
            port,
            "The striker scored twice as the champions won the derby and the manager praised "
            "the players after the cup match of the season.",
        )
    finally:
        run(["make", "stop"], cwd=project, env=env)
    assert answer["meta"]["tags"]["predictions"] == ["sport"], answer
    assert len(answer["data"]["names"]) == 5, answer
    assert not list((project / ".cdl").glob("**/*.pid")), "the server left a pid file"
