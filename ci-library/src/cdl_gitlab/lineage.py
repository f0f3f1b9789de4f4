"""Lineage of a model version: the chain of code, data, experiment, environment and cost.

``build_lineage`` assembles and validates the dict stored as ``metadata["lineage"]`` of a
registered version (schema ``cdl_gitlab/schemas/lineage.json``); ``format_lineage`` prints it.
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
DIRTY_FILES_SHOWN = 20
"""Changed files listed in ``code.dirty_files`` (all are counted in ``code.dirty_count``)."""
DEFAULT_PACKAGES = ("torch", "tensorflow-cpu", "determined", "seldon-core", "numpy", "cdl-gitlab")


class LineageError(CDLError):
    """The lineage to record is incomplete or malformed."""


def _git(root: Path, *args: str) -> str | None:
    """The output of ``git -C root ARGS`` (trailing newline removed), None if it failed."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.rstrip("\n") if result.returncode == 0 else None


def _changed_files(root: Path) -> list[str] | None:
    """Paths that differ from HEAD (modified, staged, untracked; not ignored), or None."""
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if status is None:
        return None
    paths: list[str] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its source path
            next(entries, None)
    return paths


def _ci_version(root: Path, note: str) -> dict[str, Any] | None:
    """The commit GitLab CI checked out, when ``root`` is the CI project's folder."""
    sha, project_dir = os.environ.get("CI_COMMIT_SHA"), os.environ.get("CI_PROJECT_DIR")
    if not sha or not project_dir or Path(project_dir).resolve() != root:
        return None
    return {
        "commit": sha,
        "branch": os.environ.get("CI_COMMIT_REF_NAME") or None,
        "dirty": None,
        "note": f"{note}; commit from GitLab CI's CI_COMMIT_SHA",
    }


def code_version(root: Path) -> dict[str, Any]:
    """The project's code: ``commit``, ``branch`` and ``dirty`` of the git repository whose
    top level is ``root`` (the folder of ``cdl.yaml``), with the changed files (at most
    ``DIRTY_FILES_SHOWN`` in ``dirty_files``, all counted in ``dirty_count``).

    A folder that is not the top level of its own repository (no repository, or inside
    another one, such as a checkout it was rendered into) records ``commit: None`` and a
    ``note`` saying so, never an enclosing repository's commit. GitLab CI's detached HEAD
    takes its branch from ``CI_COMMIT_REF_NAME``; where git cannot be run in the CI
    project's folder, ``CI_COMMIT_SHA`` is the commit (``dirty`` unknown).
    """
    root = Path(root).resolve()
    if shutil.which("git") is None:
        note = "git is not installed"
        return _ci_version(root, note) or _unknown_code(note)
    toplevel = _git(root, "rev-parse", "--show-toplevel")
    if toplevel is None and (root / ".git").exists():
        note = f"git cannot read the repository in {root} (see `git -C {root} status`)"
        return _ci_version(root, note) or _unknown_code(note)
    if toplevel is None or Path(toplevel).resolve() != root:
        note = f"the project folder {root} is not a git repository"
        if toplevel is not None:
            note += f" (it lies inside the repository {toplevel})"
        return _ci_version(root, note) or _unknown_code(note)
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    if commit is None:
        return _unknown_code(f"the git repository {root} has no commit yet")
    branch = _git(root, "symbolic-ref", "--short", "--quiet", "HEAD")
    if branch is None and os.environ.get("CI_COMMIT_SHA") == commit:
        branch = os.environ.get("CI_COMMIT_REF_NAME") or None
    changed = _changed_files(root)
    code: dict[str, Any] = {
        "commit": commit,
        "branch": branch,
        "dirty": None if changed is None else bool(changed),
    }
    if changed:
        code["dirty_count"] = len(changed)
        code["dirty_files"] = sorted(changed)[:DIRTY_FILES_SHOWN]
    return code


def _unknown_code(note: str) -> dict[str, Any]:
    return {"commit": None, "branch": None, "dirty": None, "note": note}


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

SHORT_ID = 12
"""Characters of a commit id the summary shows (``--json`` has the whole id)."""
METRICS_SHOWN = 4
_FIRST_METRICS = ("accuracy", "validation_accuracy", "loss", "validation_loss", "f1_macro")
_COUNTERS = frozenset({"batches", "epochs", "n_items", "steps_completed"})
_SUMMARISED = frozenset(
    {"lineage", "metrics", "hparams", "experiment_id", "trial_id", "framework", "task"}
)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as sorted ``(dotted.key, value)`` pairs."""
    pairs: list[tuple[str, Any]] = []
    for key, value in sorted(values.items()):
        if isinstance(value, dict):
            pairs += flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _short(commit: Any) -> str:
    return str(commit)[:SHORT_ID] if commit else "?"


def _code(code: dict[str, Any]) -> str:
    if not code.get("commit"):
        return f"unknown: {code.get('note') or 'not recorded'}"
    text = f"{_short(code['commit'])} on {code.get('branch') or '(detached HEAD)'}"
    if code.get("dirty") is None:
        note = f" ({code['note']})" if code.get("note") else ""
        return f"{text}, work tree state unknown{note}"
    if not code["dirty"]:
        return f"{text}, clean"
    files = list(code.get("dirty_files") or [])
    count = int(code.get("dirty_count") or len(files))
    shown = ", ".join(files[:3]) + (f" +{count - 3} more" if count > 3 else "")
    return f"{text}, DIRTY: {count} uncommitted file(s) ({shown})"


def _data_version(value: dict[str, Any] | None) -> str:
    if not value:
        return "-"
    return f"{value.get('repo')}@{value.get('branch')} {_short(value.get('commit'))}"


def _key_metrics(values: dict[str, Any]) -> str:
    """At most ``METRICS_SHOWN`` numeric top-level metrics, accuracy and loss first (counters
    such as batches and epochs left out), then the number of items if recorded."""
    numeric = {
        key: value
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in _COUNTERS
    }
    order = [key for key in _FIRST_METRICS if key in numeric]
    order += sorted(key for key in numeric if key not in order)
    shown = [f"{key} {_value(numeric[key])}" for key in order[:METRICS_SHOWN]]
    if len(order) > METRICS_SHOWN:
        shown.append(f"+{len(order) - METRICS_SHOWN} more")
    text = ", ".join(shown) or "-"
    if isinstance(values.get("n_items"), int):
        text += f" ({values['n_items']} items)"
    return text


def _checkpoint(version: ModelVersion, recorded: dict[str, Any]) -> str:
    text = version.checkpoint_uuid
    if recorded.get("steps_completed") is not None:
        text += f", {recorded['steps_completed']} steps"
    source = recorded.get("compressed_from")
    if isinstance(source, dict):
        text += f", {source.get('format')} of v{source.get('version')}"
    if recorded.get("uuid") not in (None, version.checkpoint_uuid):
        text += f" (the lineage names checkpoint {recorded['uuid']}!)"
    return text


def _deployments(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    deployments = metadata.get("deployments")
    if not isinstance(deployments, dict):
        return []
    rows = []
    for env, record in sorted(deployments.items()):
        if env != "retired" and isinstance(record, dict):
            at = f" since {record['at']}" if record.get("at") else ""
            rows.append((f"deployed {env}", f"{record.get('image')}{at}"))
    return rows


def _lineage_rows(version: ModelVersion, lineage: dict[str, Any]) -> list[tuple[str, str]]:
    data = lineage.get("data") or {}
    exp = lineage.get("experiment") or {}
    hw = lineage.get("hardware") or {}
    env = lineage.get("environment") or {}
    cost = lineage.get("cost") or {}
    hparams = ", ".join(f"{k}={_value(v)}" for k, v in flatten(exp.get("hparams") or {}))
    rows = [
        ("code", _code(lineage.get("code") or {})),
        ("data train", _data_version(data.get("train"))),
        ("data test", _data_version(data.get("test"))),
        ("experiment", f"{exp.get('id')}, trial {exp.get('trial_id')}"),
        ("hparams", hparams or "-"),
        ("checkpoint", _checkpoint(version, lineage.get("checkpoint") or {})),
    ]
    metrics = lineage.get("metrics") or {}
    for group in sorted(metrics, key=lambda g: (g != "validation", g != "test", g)):
        if isinstance(metrics[group], dict):
            rows.append((group, _key_metrics(metrics[group])))
    if env.get("image_digest"):
        rows.append(("image", str(env["image_digest"])))
    gpu = f"{hw.get('gpu_count')} x {hw.get('gpu_model')}" if hw.get("gpu_count") else "no GPU"
    packages = ", ".join(f"{k} {v}" for k, v in sorted((env.get("packages") or {}).items()) if v)
    cost_text = f"{_value(cost.get('wall_seconds'))} s wall, "
    cost_text += f"{_value(cost.get('device_hours'))} device-hours"
    if cost.get("search_wall_seconds") is not None:
        cost_text += f" (search {_value(cost['search_wall_seconds'])} s)"
    rows += [
        ("hardware", f"{hw.get('cpu_model')}, {hw.get('cpu_cores')} cores, {gpu}"),
        ("environment", f"Python {env.get('python')}" + (f"; {packages}" if packages else "")),
        ("cost", cost_text),
    ]
    return rows


def format_lineage(version: ModelVersion) -> str:
    """A dozen readable lines: code, data, experiment, checkpoint, key metrics, image and
    deployments, hardware, environment, cost (``cdl lineage --json`` gives everything)."""
    created = version.created.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    kind = " ".join(
        str(version.metadata[k]) for k in ("framework", "task") if version.metadata.get(k)
    )
    about = f"{kind} model, registered {created}" if kind else f"registered {created}"
    lines = [f"{version.model} v{version.version}  ({about})"]
    lineage = version.metadata.get("lineage")
    if isinstance(lineage, dict):
        rows = _lineage_rows(version, lineage)
    else:
        rows = [
            ("checkpoint", version.checkpoint_uuid),
            ("lineage", "none recorded (register through `cdl model` to record it)"),
        ]
        metrics = version.metadata.get("metrics") or {}
        rows += [(g, _key_metrics(v)) for g, v in sorted(metrics.items()) if isinstance(v, dict)]
    rows += _deployments(version.metadata)
    others = sorted(set(version.metadata) - _SUMMARISED - {"deployments"})
    if others:
        rows.append(("also recorded", f"{', '.join(others)} (see --json)"))
    width = max(len(label) for label, _ in rows)
    lines += [f"  {label.ljust(width)}  {text}" for label, text in rows]
    return "\n".join(lines)
