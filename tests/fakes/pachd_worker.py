"""The fake cluster's pipeline workers: runs the jobs of the pipelines a ``FakePachd`` holds.

Where pachd would start a worker pod, this runs the spec's ``transform.cmd`` in a subprocess
with only what the pod would have: the spec's ``transform.env``, its ``transform.secrets``
resolved from the Kubernetes secrets the test declares (``secrets``: name -> key -> value),
Pachyderm's ``PPS_PIPELINE_NAME`` / ``<input>`` / ``<input>_COMMIT`` variables, the inputs laid
out under ``CDL_PFS_ROOT`` (``/pfs`` in a pod) and ``base_env`` (what the image sets:
``PATH``, ``CDL_CONFIG``). ``cmd[0] == "python"`` runs with this interpreter (the image's
Python); the working folder is ``workdir`` (the image's WORKDIR holding the project).

A pod refuses to start, as on the cluster, when its image is in ``private_registry`` without
``transform.image_pull_secrets`` naming a declared secret (ErrImagePull). Jobs run when every
input commit of their commit set is finished; only the glob ``/`` is served (one datum), which
is what CDL's specs use; another glob fails the job with a message saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from fakes.pachd import FakeCommit, FakePachd


class FakeWorkers:
    def __init__(
        self,
        pachd: FakePachd,
        workdir: Path,
        base_env: dict[str, str],
        secrets: dict[str, dict[str, str]] | None = None,
        private_registry: str = "",
    ) -> None:
        self.pachd = pachd
        self.workdir = workdir
        self.base_env = base_env
        self.secrets = secrets or {}
        self.private_registry = private_registry
        self.ran: list[tuple[str, str, str]] = []  # (pipeline, commit set, "" or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FakeWorkers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            job = self._next_job()
            if job is not None:
                self._run(*job)

    def _next_job(self) -> tuple[str, FakeCommit, dict[str, Any], list[tuple]] | None:
        """The first open output commit whose inputs are all finished, with its inputs."""
        with self.pachd.lock:
            for pipeline, spec in self.pachd.effective.items():
                repo = self.pachd.repos.get(pipeline)
                if repo is None:
                    continue
                for commit in repo.commits.values():
                    if commit.finished:
                        continue
                    inputs = self._inputs(spec["input"], commit.id)
                    if inputs is not None:
                        return pipeline, commit, spec, inputs
        return None

    def _inputs(self, node: dict[str, Any], set_id: str) -> list[tuple] | None:
        """(pfs input spec, its commit) per input; None while one is not finished."""
        if "pfs" in node:
            pfs = node["pfs"]
            repo = self.pachd.repos[pfs["repo"]]
            branch = pfs.get("branch") or "master"
            commit = repo.commits.get(set_id) or repo.commits.get(repo.branches.get(branch, ""))
            if commit is not None and not commit.finished:
                return None
            return [(pfs, commit)]
        found: list[tuple] = []
        for kind in ("cross", "union", "join", "group"):
            for child in node.get(kind) or []:
                part = self._inputs(child, set_id)
                if part is None:
                    return None
                found.extend(part)
        return found

    def _run(self, pipeline: str, commit: FakeCommit, spec: dict, inputs: list[tuple]) -> None:
        error, files = self._job(pipeline, spec, inputs)
        with self.pachd.lock:
            commit.finished, commit.error = True, error
            if not error:
                commit.files = files
        self.ran.append((pipeline, commit.id, error))

    def _job(self, pipeline: str, spec: dict, inputs: list[tuple]) -> tuple[str, dict]:
        transform = spec["transform"]
        image = transform["image"]
        pull = transform.get("image_pull_secrets") or transform.get("imagePullSecrets") or []
        private = self.private_registry and image.startswith(self.private_registry)
        if private and not any(name in self.secrets for name in pull):
            return f"ErrImagePull: {image}: pull access denied (no image pull secret)", {}
        if any(pfs["glob"].strip("/") for pfs, _ in inputs):
            return "the fake workers serve the glob / only", {}
        if any(commit is None or not commit.files for _, commit in inputs):
            return "", {}  # an empty input (glob /): zero datums, an empty output commit
        env = dict(self.base_env)
        env.update({str(k): str(v) for k, v in (transform.get("env") or {}).items()})
        for secret in transform.get("secrets") or []:
            values = self.secrets.get(secret["name"])
            if values is None or secret.get("key") not in values:
                return f"missing Kubernetes secret {secret['name']}", {}
            if secret.get("env_var"):
                env[secret["env_var"]] = values[secret["key"]]
        with tempfile.TemporaryDirectory(prefix=f"pfs-{pipeline}-") as tmp:
            root = Path(tmp)
            (root / "out").mkdir()
            for pfs, commit in inputs:
                name = pfs.get("name") or pfs["repo"]
                folder = root / name
                folder.mkdir()
                for path, data in commit.files.items():
                    target = folder / path.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(b"" if pfs.get("empty_files") else data)
                env[name] = str(folder)
                env[f"{name}_COMMIT"] = commit.id
            env.update({"CDL_PFS_ROOT": str(root), "PPS_PIPELINE_NAME": pipeline})
            cmd = list(transform["cmd"])
            if cmd[0] in ("python", "python3"):
                cmd[0] = sys.executable
            result = subprocess.run(
                cmd, cwd=self.workdir, env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                return f"exit code {result.returncode}: {result.stderr[-2000:]}", {}
            out = root / "out"
            return "", {
                "/" + path.relative_to(out).as_posix(): path.read_bytes()
                for path in sorted(out.rglob("*"))
                if path.is_file()
            }


def image_env() -> dict[str, str]:
    """What an image with this cdl-gitlab installed sets: PATH, locale, and PYTHONPATH when the
    tests run a work tree's package over the shared environment's."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env
