"""A real local package index for the release tests, and a library release under gitlab-ci-local.

- ``PackageIndex`` runs pypiserver 2.4.2 (from ``.venv-release``, installed by
  ``scripts/install-ci-tools.sh``) on 127.0.0.1: it accepts twine uploads with any credentials
  (``-a . -P .``) and serves only what was uploaded (``--disable-fallback``: no redirect to
  the public index for a name it does not hold).
- ``library_checkout`` makes the library snapshot the release pipeline runs in: the files of
  ``ci-library/`` only (the release builds from that folder alone), committed and tagged.
- ``release_args`` are the gitlab-ci-local arguments of a tag pipeline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cdl_ci_harness as h

RELEASE_VENV = h.REPO_ROOT / ".venv-release"
RELEASE_PYTHON = RELEASE_VENV / "bin" / "python"
PYPI_SERVER = RELEASE_VENV / "bin" / "pypi-server"


def release_tools_missing() -> list[str]:
    """The pinned release tools (the pipeline's RELEASE_TOOLS) and pypiserver, when absent."""
    check = subprocess.run(
        ["bash", str(h.INSTALL_SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    return (
        []
        if check.returncode == 0
        else [line for line in check.stderr.splitlines() if "missing" in line]
    )


def ensure_release_tools() -> list[str]:
    if release_tools_missing():
        subprocess.run(
            ["bash", str(h.INSTALL_SCRIPT)],
            cwd=h.REPO_ROOT,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=900,
        )
    return release_tools_missing()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PackageIndex:
    """pypiserver serving ``packages`` on 127.0.0.1:``port``."""

    packages: Path
    port: int

    @property
    def url(self) -> str:
        """The upload URL (twine's --repository-url)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple(self) -> str:
        """The simple index pip installs from."""
        return f"http://127.0.0.1:{self.port}/simple/"

    def files(self) -> list[str]:
        return sorted(p.name for p in self.packages.iterdir() if p.is_file())

    def project_page(self, name: str) -> str:
        with urllib.request.urlopen(f"{self.simple}{name}/", timeout=10) as response:
            return response.read().decode("utf-8")


@contextmanager
def package_index(packages: Path, log: Path) -> Iterator[PackageIndex]:
    packages.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with log.open("w", encoding="utf-8") as out:
        server = subprocess.Popen(
            [
                str(PYPI_SERVER),
                "run",
                "--interface",
                "127.0.0.1",
                "--port",
                str(port),
                "--authenticate",
                ".",
                "--passwords",
                ".",
                "--disable-fallback",
                str(packages),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    index = PackageIndex(packages, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(index.simple, timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pypiserver did not start:\n{log.read_text(encoding='utf-8')}"
                    ) from None
                time.sleep(0.2)
        yield index
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def library_checkout(sandbox: h.Sandbox, dest: Path, tag: str, version: str | None = None) -> Path:
    """The library's files (``ci-library/`` only) committed on main and tagged ``tag``, with
    an origin on the fake instance; ``version`` rewrites ``cdl_gitlab.__version__`` first."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    h.copy_worktree(h.LIBRARY_DIR, dest)
    if version is not None:
        init = dest / "src" / "cdl_gitlab" / "__init__.py"
        text = init.read_text(encoding="utf-8")
        init.write_text(
            text.replace(f'__version__ = "{h.cdl_version()}"', f'__version__ = "{version}"'),
            encoding="utf-8",
        )
    sandbox.git("init", "-q", "-b", "main", cwd=dest)
    sandbox.git("add", "-A", cwd=dest)
    sandbox.git("commit", "-q", "-m", f"CDL CI/CD components {tag}", cwd=dest)
    sandbox.git("tag", "-a", tag, "-m", tag, cwd=dest)
    sandbox.attach_project(dest, h.LIBRARY_PROJECT)
    return dest


def release_args(
    tag: str, *jobs: str, registry: str | None = None, needs: bool = True
) -> list[str]:
    """gitlab-ci-local arguments of a pipeline for ``tag`` that runs ``jobs`` (and, with
    ``needs``, what they need), shell executor, jobs isolated, artifacts passed on."""
    args = [
        "--force-shell-executor",
        "--shell-isolation",
        "--no-artifacts-to-source",
        "--max-job-name-padding",
        "0",
        "--ignore-predefined-vars",
        "CI_COMMIT_REF_NAME",
        "--unset-variable",
        "CI_COMMIT_BRANCH",
        "--variable",
        f"CI_COMMIT_TAG={tag}",
        "--variable",
        f"CI_COMMIT_REF_NAME={tag}",
        # GitLab gives every job a token; pypiserver -a . -P . accepts any credentials
        "--variable",
        "CI_JOB_TOKEN=local-release-test-token",
    ]
    if registry is not None:
        args += ["--variable", f"PACKAGE_REGISTRY_URL={registry}"]
    if needs:
        args.append("--needs")
    return [*args, *jobs]


def tag_list_args(tag: str) -> list[str]:
    """gitlab-ci-local --list-json arguments of a tag pipeline (no job runs)."""
    return [
        "--ignore-predefined-vars",
        "CI_COMMIT_REF_NAME",
        "--unset-variable",
        "CI_COMMIT_BRANCH",
        "--variable",
        f"CI_COMMIT_TAG={tag}",
        "--variable",
        f"CI_COMMIT_REF_NAME={tag}",
    ]


def release_env() -> dict[str, str]:
    """The job's Python is the release tools' interpreter (the pinned tools are installed)."""
    return {"PATH": f"{RELEASE_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def isolated_env() -> dict[str, str]:
    """This environment without PYTHONPATH (a test session points it at the work tree) and
    without this machine's pip configuration (config files, PIP_* index variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env
