"""Lineage of a model version: the chain of code, data, experiment, environment and cost.

``build_lineage`` assembles and validates the dict stored as ``metadata["lineage"]`` of a
registered version (schema ``cdl/schemas/lineage.json``); ``format_lineage`` prints it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.registry.base import ModelVersion

SCHEMA_VERSION = 1
DEFAULT_PACKAGES = ("torch", "tensorflow-cpu", "determined", "seldon-core", "numpy", "cdl-gitlab")


class LineageError(CDLError):
    """The lineage to record is incomplete or malformed."""


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_version(root: Path) -> dict[str, Any]:
    """``{"commit", "branch", "dirty"}`` of the git checkout at ``root``.

    GitLab CI checks out a detached HEAD, so ``CI_COMMIT_SHA`` / ``CI_COMMIT_REF_NAME`` win
    when set. Values git cannot tell are ``None``.
    """
    commit = os.environ.get("CI_COMMIT_SHA") or _git(root, "rev-parse", "HEAD")
    branch = os.environ.get("CI_COMMIT_REF_NAME") or _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        branch = None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": branch, "dirty": None if status is None else bool(status)}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
            return value.strip()
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def hardware() -> dict[str, Any]:
    """CPU model and cores, GPU model and count of this machine (nvidia-smi if present)."""
    gpus = _gpus()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "gpu_model": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "machine": platform.machine(),
    }


def environment(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Python version, installed versions of ``packages`` and ``$CDL_IMAGE_DIGEST``."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "image_digest": os.environ.get("CDL_IMAGE_DIGEST") or None,
    }


@functools.cache
def lineage_schema() -> dict[str, Any]:
    text = resources.files("cdl_gitlab").joinpath("schemas", "lineage.json").read_text("utf-8")
    return json.loads(text)


def build_lineage(
    *,
    code: dict[str, Any],
    data: dict[str, Any],
    experiment: dict[str, Any],
    checkpoint: dict[str, Any],
    metrics: dict[str, Any],
    hardware: dict[str, Any],
    environment: dict[str, Any],
    cost: dict[str, Any],
    logs: dict[str, Any],
) -> dict[str, Any]:
    """The validated lineage dict to store as ``metadata["lineage"]``."""
    from jsonschema import Draft7Validator

    lineage = {
        "schema_version": SCHEMA_VERSION,
        "code": code,
        "data": data,
        "experiment": experiment,
        "checkpoint": checkpoint,
        "metrics": metrics,
        "hardware": hardware,
        "environment": environment,
        "cost": cost,
        "logs": {key: None if value is None else str(value) for key, value in logs.items()},
    }
    try:
        lineage = json.loads(json.dumps(lineage, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise LineageError(f"lineage must be JSON-serialisable (no NaN): {exc}") from exc
    errors = sorted(
        Draft7Validator(lineage_schema()).iter_errors(lineage), key=lambda e: list(e.path)
    )
    if errors:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"
            for error in errors
        )
        raise LineageError(f"invalid lineage: {problems}")
    return lineage


# -- formatting ------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        text = json.dumps(value, default=str)
        return text if len(text) <= 40 else f"[{len(value)} items]"
    return str(value)


def flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as sorted ``(dotted.key, value)`` pairs."""
    pairs: list[tuple[str, Any]] = []
    for key, value in sorted(values.items()):
        if isinstance(value, dict):
            pairs += flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _pairs(values: dict[str, Any] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{key}={_value(value)}" for key, value in flatten(values))


def _data_version(value: dict[str, Any] | None) -> str:
    if not value:
        return "-"
    return f"{value.get('repo')}@{value.get('branch')} commit {value.get('commit')}"


def _rows(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    code = lineage.get("code", {})
    data = lineage.get("data", {})
    exp = lineage.get("experiment", {})
    metrics = lineage.get("metrics", {})
    hw = lineage.get("hardware", {})
    env = lineage.get("environment", {})
    cost = lineage.get("cost", {})
    dirty = " (uncommitted changes)" if code.get("dirty") else ""
    gpu = f"{hw.get('gpu_count')} x {hw.get('gpu_model')}" if hw.get("gpu_count") else "no GPU"
    packages = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()) if v)
    cost_text = f"{_value(cost.get('wall_seconds'))} s wall, {_value(cost.get('device_hours'))} "
    cost_text += "device-hours"
    if cost.get("search_wall_seconds") is not None:
        cost_text += f", search {_value(cost['search_wall_seconds'])} s"
    rows = [
        ("code", f"commit {code.get('commit')} on {code.get('branch')}{dirty}"),
        ("data train", _data_version(data.get("train"))),
        ("data test", _data_version(data.get("test"))),
        ("experiment", f"{exp.get('id')}, trial {exp.get('trial_id')}"),
        ("hparams", _pairs(exp.get("hparams"))),
    ]
    rows += [(f"metrics {group}", _pairs(values)) for group, values in sorted(metrics.items())]
    rows += [
        ("hardware", f"{hw.get('cpu_model')}, {hw.get('cpu_cores')} cores, {gpu}"),
        ("environment", f"Python {env.get('python')}; {packages or '-'}"),
        ("image", str(env.get("image_digest") or "-")),
        ("cost", cost_text),
        ("logs", _pairs(lineage.get("logs"))),
    ]
    return rows


def format_lineage(version: ModelVersion) -> str:
    """A human-readable block: the lineage, then the version's other metadata."""
    created = version.created.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    lines = [f"{version.model} v{version.version}  (registered {created})"]
    lineage = version.metadata.get("lineage")
    rows: list[tuple[str, str]] = [("checkpoint", version.checkpoint_uuid)]
    if isinstance(lineage, dict):
        recorded = lineage.get("checkpoint") or {}
        if recorded.get("steps_completed") is not None:
            rows[0] = (
                "checkpoint",
                f"{version.checkpoint_uuid} ({recorded['steps_completed']} steps)",
            )
        if recorded.get("uuid") not in (None, version.checkpoint_uuid):
            rows.append(("lineage checkpoint", f"{recorded['uuid']} (differs from the version's!)"))
        rows += _rows(lineage)
    else:
        rows.append(("lineage", "none recorded (register through `cdl model` to record it)"))
    for key, value in sorted(version.metadata.items()):
        if key != "lineage":
            rows.append((key, _pairs(value) if isinstance(value, dict) else _value(value)))
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label.ljust(width)}  {text}" for label, text in rows]
    return "\n".join(lines)
