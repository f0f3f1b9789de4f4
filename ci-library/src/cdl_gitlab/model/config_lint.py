"""Lint Determined 0.38 experiment configs against the schema shipped in ``cdl/schemas``.

The determined wheel (0.38.1) carries no experiment-config schema (its bindings do not model
the config either), so CDL ships one written from the rules of the master's own expconf v0
schema of the 0.38.1 release, with the current keys only (``determined-experiment-0.38.json``):
``environment`` has ``ports`` and no ``slurm``/``pbs`` (those are top-level sections, which the
Kubernetes resource manager ignores: a warning), and the master's refusals inside
``environment.pod_spec`` (the ``determined-container``'s image, command, probes... are its
own) are checked here. Every issue names its key path (``searcher.max_trials``). Deprecated
and removed keys are errors that say what to use instead.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import click
import yaml

SCHEMA_FILE = "determined-experiment-0.38.json"
Kind = Literal["yaml", "unknown", "type", "invalid", "deprecated"]
Severity = Literal["error", "warning"]

_ASHA_LENGTH = (
    "set searcher.max_time and searcher.time_metric (e.g. max_time: 1000, time_metric: batches) "
    "and pass the same length to the training code (PyTorch Trainer.fit(max_length=...))"
)
_CODE_LENGTH = (
    "set the training length in the training code instead (PyTorch "
    "Trainer.fit(max_length=det.pytorch.Batch(n)), Keras model.fit(epochs=n))"
)
DEPRECATED: dict[str, str] = {
    "min_validation_period": (
        "deprecated in Determined 0.38: pass validation_period to Trainer.fit() "
        "(Keras: validation_freq in model.fit)"
    ),
    "min_checkpoint_period": (
        "deprecated in Determined 0.38: pass checkpoint_period to Trainer.fit() "
        "(Keras: DeterminedCallback(checkpoint_epochs=...))"
    ),
    "records_per_epoch": (
        "deprecated in Determined 0.38: express lengths in batches, or count epochs in the "
        "training code"
    ),
    "searcher.stop_once": "deprecated in Determined 0.38 and ignored: remove it",
    "tensorboard_storage": (
        "removed: TensorBoard files are stored in checkpoint_storage; remove the key"
    ),
    "data_layer": "removed: load data in the trial code (CDL: cdl_gitlab.data.dataset.load_split)",
    "resources.native_parallel": (
        "removed: use a launcher in the entrypoint "
        "(python3 -m determined.launch.torch_distributed python3 train.py)"
    ),
    "resources.agent_label": "removed: use resources.resource_pool",
    "environment.image.gpu": "removed: use environment.image.cuda",
    "environment.environment_variables.gpu": "removed: use environment.environment_variables.cuda",
    "checkpoint_storage.checkpoint_path": "removed: use checkpoint_storage.storage_path",
    "checkpoint_storage.tensorboard_path": "removed: TensorBoard files live in checkpoint_storage",
}
REMOVED_SEARCHERS = {
    "custom": "removed in Determined 0.38: use adaptive_asha (or random/grid)",
    "pbt": "removed: use adaptive_asha",
    "sync_halving": "removed: use adaptive_asha",
    "adaptive": "removed: use adaptive_asha",
    "adaptive_simple": "removed: use adaptive_asha",
}
DETERMINED_CONTAINER = "determined-container"
# The master's refusals in a pod_spec container named determined-container (both spellings:
# the schema names them in snake_case, Kubernetes specs are written in camelCase).
POD_CONTAINER_FIXED: dict[str, str] = {
    "image": "set environment.image instead",
    "command": "the master runs the entrypoint",
    "args": "the master runs the entrypoint",
    "working_dir": "the master sets it",
    "workingDir": "the master sets it",
    "ports": "use environment.ports or proxy_ports",
    "liveness_probe": "the master manages the container",
    "livenessProbe": "the master manages the container",
    "readiness_probe": "the master manages the container",
    "readinessProbe": "the master manages the container",
    "startup_probe": "the master manages the container",
    "startupProbe": "the master manages the container",
    "lifecycle": "the master manages the container",
    "termination_message_path": "the master manages the container",
    "terminationMessagePath": "the master manages the container",
    "termination_message_policy": "the master manages the container",
    "terminationMessagePolicy": "the master manages the container",
    "image_pull_policy": "set environment.force_pull_image instead",
    "imagePullPolicy": "set environment.force_pull_image instead",
    "security_context": "set environment.add_capabilities / drop_capabilities instead",
    "securityContext": "set environment.add_capabilities / drop_capabilities instead",
}
HPC_SECTIONS = {
    "slurm": "Slurm launcher clusters",
    "pbs": "PBS launcher clusters",
}
_ENTRYPOINT_CLASS = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


@dataclass(frozen=True)
class LintIssue:
    """One problem in an experiment config, at a dotted key path."""

    file: str
    path: str
    message: str
    kind: Kind
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.file}: {self.severity}: {self.path or '(top level)'}: {self.message}"


@functools.cache
def experiment_schema() -> dict[str, Any]:
    """The Determined 0.38 experiment-config schema shipped with cdl."""
    text = resources.files("cdl_gitlab").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _get(config: Any, dotted: str) -> tuple[bool, Any]:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _deprecations(config: dict[str, Any], source: str, context_dir: Path | None) -> list[LintIssue]:
    issues = []
    for dotted, advice in DEPRECATED.items():
        if _get(config, dotted)[0]:
            issues.append(LintIssue(source, dotted, advice, "deprecated"))
    searcher = config.get("searcher")
    if isinstance(searcher, dict):
        name = searcher.get("name")
        if isinstance(name, str) and name in REMOVED_SEARCHERS:
            issues.append(
                LintIssue(
                    source, "searcher.name", f"{name!r} {REMOVED_SEARCHERS[name]}", "deprecated"
                )
            )
        if "max_length" in searcher:
            advice = _ASHA_LENGTH if name in ("adaptive_asha", "async_halving") else _CODE_LENGTH
            issues.append(
                LintIssue(
                    source,
                    "searcher.max_length",
                    f"deprecated in Determined 0.38: {advice}",
                    "deprecated",
                )
            )
    issues += _entrypoint_issues(config.get("entrypoint"), source, context_dir)
    return issues


def _pod_spec_issues(config: dict[str, Any], source: str) -> list[LintIssue]:
    """What the master refuses in ``environment.pod_spec``'s determined-container."""
    found, containers = _get(config, "environment.pod_spec.spec.containers")
    if not found or not isinstance(containers, list):
        return []
    issues = []
    for index, container in enumerate(containers):
        if not isinstance(container, dict) or container.get("name") != DETERMINED_CONTAINER:
            continue
        for key in container:
            if key in POD_CONTAINER_FIXED:
                issues.append(
                    LintIssue(
                        source,
                        f"environment.pod_spec.spec.containers[{index}].{key}",
                        f"not configurable in the {DETERMINED_CONTAINER} (the master refuses "
                        f"it): {POD_CONTAINER_FIXED[key]}",
                        "invalid",
                    )
                )
    return issues


def _hpc_issues(config: dict[str, Any], source: str) -> list[LintIssue]:
    """``slurm``/``pbs``: valid keys the Kubernetes resource manager ignores."""
    return [
        LintIssue(
            source,
            key,
            f"applies to {where} only: the Kubernetes resource manager of the cluster profile "
            "ignores it (resources.slots_per_trial and resource_pool choose the hardware)",
            "invalid",
            "warning",
        )
        for key, where in HPC_SECTIONS.items()
        if key in config
    ]


def _entrypoint_issues(entrypoint: Any, source: str, context_dir: Path | None) -> list[LintIssue]:
    """``module:Class`` naming a TFKerasTrial is deprecated in 0.38."""
    if not isinstance(entrypoint, str):
        return []
    match = _ENTRYPOINT_CLASS.match(entrypoint.strip())
    if not match:
        return []
    module, cls = match.groups()
    advice = (
        "TFKerasTrial and the 'module:Class' entrypoint for Keras are deprecated in Determined "
        "0.38: train with a script that uses det.keras.DeterminedCallback "
        "(entrypoint: python3 train.py)"
    )
    if context_dir is None:
        return []
    relative = Path(*module.split("."))
    for candidate in (
        context_dir / relative.with_suffix(".py"),
        context_dir / relative / "__init__.py",
    ):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace")
            pattern = rf"class\s+{re.escape(cls)}\s*\([^)]*TFKerasTrial"
            if re.search(pattern, text):
                return [LintIssue(source, "entrypoint", advice, "deprecated")]
            return []
    return [
        LintIssue(
            source,
            "entrypoint",
            f"module {module!r} not found in {context_dir} (the context directory)",
            "invalid",
            "warning",
        )
    ]


def _unknown_key(where: str, instance: dict[str, Any], allowed: set[str]) -> str:
    owner = "a Determined 0.38 experiment-config key"
    if where == "searcher" and isinstance(instance.get("name"), str):
        owner = f"a key of the {instance['name']!r} searcher in Determined 0.38"
    hint = f"; allowed here: {', '.join(sorted(allowed))}" if len(allowed) <= 12 else ""
    return f"unknown key (not {owner}; check its spelling and indentation{hint})"


def _schema_issues(config: dict[str, Any], source: str, skip: set[str]) -> Iterator[LintIssue]:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import best_match

    validator = Draft7Validator(experiment_schema())
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path]):
        if error.validator == "oneOf" and error.context:
            # report the branch of the instance's own type, not "is not of type 'string'"
            matching = [e for e in error.context if e.validator != "type"] or error.context
            error = best_match(matching)
        where = _path(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - allowed):
                key_path = f"{where}.{key}" if where else str(key)
                if key_path not in skip:
                    yield LintIssue(
                        source, key_path, _unknown_key(where, error.instance, allowed), "unknown"
                    )
            continue
        if any(where == s or where.startswith(s + ".") for s in skip):
            continue
        kind: Kind = "type" if error.validator == "type" else "invalid"
        yield LintIssue(source, where, error.message, kind)


def _hyperparameter_issues(config: dict[str, Any], source: str) -> list[LintIssue]:
    hparams = config.get("hyperparameters")
    grid = isinstance(config.get("searcher"), dict) and config["searcher"].get("name") == "grid"
    issues: list[LintIssue] = []

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        if "type" in node:
            low, high = node.get("minval"), node.get("maxval")
            if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
                issues.append(
                    LintIssue(
                        source, f"{prefix}.minval", f"{low} is above maxval {high}", "invalid"
                    )
                )
            if grid and node.get("type") in ("int", "double", "log") and "count" not in node:
                issues.append(
                    LintIssue(source, f"{prefix}.count", "required by the grid searcher", "invalid")
                )
            return
        for key, value in node.items():
            walk(value, f"{prefix}.{key}")

    if isinstance(hparams, dict):
        for key, value in hparams.items():
            walk(value, f"hyperparameters.{key}")
    return issues


def lint_config(
    config: Any, source: str = "<config>", context_dir: Path | None = None
) -> list[LintIssue]:
    """Issues of an already-parsed experiment config (deprecations first, then the schema)."""
    if not isinstance(config, dict):
        return [LintIssue(source, "", "expected a mapping of settings at the top level", "type")]
    issues = _deprecations(config, source, context_dir)
    skip = {issue.path for issue in issues if issue.kind == "deprecated"}
    issues += list(_schema_issues(config, source, skip))
    issues += _hyperparameter_issues(config, source)
    issues += _pod_spec_issues(config, source)
    issues += _hpc_issues(config, source)
    return issues


def lint_experiment_config(path: Path) -> list[LintIssue]:
    """Issues of the experiment config file at ``path`` (its folder is the context directory)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [LintIssue(source, "", f"cannot read: {exc.strerror}", "yaml")]
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [LintIssue(source, "", f"not valid YAML: {exc}", "yaml")]
    return lint_config(config, source, path.parent)


def lint_paths(paths: Sequence[Path]) -> int:
    """Lint each config, print its issues; exit code 1 if any has an error, else 0."""
    failed = False
    for path in paths:
        issues = lint_experiment_config(Path(path))
        errors = [issue for issue in issues if issue.severity == "error"]
        for issue in issues:
            click.echo(str(issue))
        if errors:
            failed = True
            click.echo(f"{path}: {len(errors)} error(s)")
        else:
            click.echo(f"{path}: ok")
    return 1 if failed else 0
