"""The fake ``kubectl`` (tests/deploy/fake_kubectl.py) first on PATH, with a kubeconfig: the
process boundary of the code that creates Kubernetes objects."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

FAKE = Path(__file__).resolve().parents[1] / "deploy" / "fake_kubectl.py"
KUBECONFIG = "apiVersion: v1\nclusters: [{name: c, cluster: {server: https://k8s}}]\n# s3cr3t\n"


def install_fake_kubectl(tmp_path: Path, monkeypatch: Any) -> Path:
    """Put the fake first on PATH and set ``$KUBECONFIG_B64``; returns the log of its calls."""
    bin_dir = tmp_path / "kubectl-bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "kubectl.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    monkeypatch.setenv("KUBECONFIG_B64", base64.b64encode(KUBECONFIG.encode()).decode())
    for name in ("CDL_KUBECTL", "FAKE_KUBECTL_FAIL", "FAKE_KUBECTL_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    return log


def kubectl_calls(log: Path) -> list[dict[str, Any]]:
    """The recorded calls: ``argv``, ``stdin``, ``kubeconfig`` ..."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def applied(log: Path, kind: str = "Secret") -> list[dict[str, Any]]:
    """The objects of ``kind`` applied successfully, in order."""
    objects = [
        yaml.safe_load(call["stdin"])
        for call in kubectl_calls(log)
        if call["argv"][:1] == ["apply"] and call["applied"]
    ]
    return [o for o in objects if o.get("kind") == kind]


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's values as the API server holds them: ``data`` decoded, ``stringData`` over it."""
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**values, **(secret.get("stringData") or {})}


class AppliedSecrets(Mapping[str, dict[str, str]]):
    """The Secrets the fake kubectl applied (name -> values), as the cluster holds them:
    hand it to ``FakeDeterminedMaster.kube_secrets`` and trial pods read what CDL applied."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def _secrets(self) -> dict[str, dict[str, str]]:
        return {s["metadata"]["name"]: secret_values(s) for s in applied(self.log)}

    def __getitem__(self, name: str) -> dict[str, str]:
        return self._secrets()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets())

    def __len__(self) -> int:
        return len(self._secrets())
