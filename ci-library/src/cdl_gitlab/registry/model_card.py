"""The model card: a Markdown summary of every registered version of a model.

The paper's ``summary.md``, extended: versions with checkpoint ids, code and data versions,
validation and test metrics (and their change from the previous version), cost and
deployments, read from each version's metadata (``lineage``, ``deployments``).
"""

from __future__ import annotations

from typing import Any

from cdl_gitlab.lineage import flatten
from cdl_gitlab.registry.base import ModelRegistry, ModelVersion, in_production

_MAX_CELL_METRICS = 3


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _metrics(version: ModelVersion, group: str) -> dict[str, Any]:
    lineage = version.metadata.get("lineage") or {}
    values = (lineage.get("metrics") or {}).get(group) or {}
    return {key: value for key, value in flatten(values) if isinstance(value, int | float)}


def _short_metrics(values: dict[str, Any]) -> str:
    if not values:
        return "-"
    shown = [f"{key} {_num(value)}" for key, value in list(values.items())[:_MAX_CELL_METRICS]]
    if len(values) > _MAX_CELL_METRICS:
        shown.append(f"+{len(values) - _MAX_CELL_METRICS}")
    return ", ".join(shown)


def _data(version: ModelVersion, split: str) -> str:
    data = ((version.metadata.get("lineage") or {}).get("data") or {}).get(split) or {}
    if not data:
        return "-"
    return f"{data.get('repo')}@{data.get('branch')} `{str(data.get('commit'))[:12]}`"


def _code(version: ModelVersion) -> str:
    code = (version.metadata.get("lineage") or {}).get("code") or {}
    if not code.get("commit"):
        return "-"
    return f"`{str(code['commit'])[:12]}` ({code.get('branch')})"


def _deployments(version: ModelVersion) -> str:
    deployments = version.metadata.get("deployments") or {}
    if not isinstance(deployments, dict) or not deployments:
        return "-"
    return ", ".join(sorted(deployments))


def _deltas(current: ModelVersion, previous: ModelVersion | None) -> list[str]:
    if previous is None:
        return []
    lines = []
    for group in ("validation", "test"):
        before, after = _metrics(previous, group), _metrics(current, group)
        for key in sorted(set(before) & set(after)):
            change = after[key] - before[key]
            lines.append(
                f"{group} {key}: {_num(before[key])} -> {_num(after[key])} ({change:+.4g})"
            )
    return lines


def _details(version: ModelVersion, previous: ModelVersion | None) -> list[str]:
    lineage = version.metadata.get("lineage") or {}
    experiment = lineage.get("experiment") or {}
    cost = lineage.get("cost") or {}
    env = lineage.get("environment") or {}
    hw = lineage.get("hardware") or {}
    lines = [
        f"### v{version.version}",
        "",
        f"- Checkpoint: `{version.checkpoint_uuid}`",
        f"- Registered: {version.created.isoformat(timespec='seconds')}",
        f"- Code: {_code(version)}",
        f"- Data: train {_data(version, 'train')}; test {_data(version, 'test')}",
    ]
    if experiment:
        hparams = ", ".join(f"{k}={_num(v)}" for k, v in flatten(experiment.get("hparams") or {}))
        lines.append(
            f"- Experiment {experiment.get('id')}, trial {experiment.get('trial_id')}: "
            f"{hparams or 'no hyperparameters'}"
        )
    for group in ("validation", "test"):
        values = _metrics(version, group)
        if values:
            lines.append(
                f"- {group.capitalize()} metrics: "
                + ", ".join(f"{k} {_num(v)}" for k, v in values.items())
            )
    if hw:
        gpu = f"{hw.get('gpu_count')} x {hw.get('gpu_model')}" if hw.get("gpu_count") else "CPU"
        lines.append(f"- Hardware: {hw.get('cpu_model')} ({hw.get('cpu_cores')} cores), {gpu}")
    if env:
        lines.append(
            f"- Environment: Python {env.get('python')}"
            + (f", image `{env['image_digest']}`" if env.get("image_digest") else "")
        )
    if cost:
        lines.append(
            f"- Cost: {_num(cost.get('wall_seconds'))} s wall, "
            f"{_num(cost.get('device_hours'))} device-hours"
        )
    deployments = version.metadata.get("deployments") or {}
    if isinstance(deployments, dict):
        for env_name, info in sorted(deployments.items()):
            detail = (
                ", ".join(f"{k} {v}" for k, v in flatten(info))
                if isinstance(info, dict)
                else str(info)
            )
            lines.append(f"- Deployed to {env_name}: {detail}")
    deltas = _deltas(version, previous)
    if deltas:
        lines.append(
            f"- Change from v{previous.version if previous else '?'}: " + "; ".join(deltas)
        )
    return [*lines, ""]


def model_card(registry: ModelRegistry, name: str) -> str:
    """Markdown listing every version of ``name`` with ids, metrics, data and deployments."""
    versions = registry.list_versions(name)
    lines = [f"# Model card: {name}", ""]
    if not versions:
        return "\n".join([*lines, "No registered versions yet.", ""])
    production = next((v for v in reversed(versions) if in_production(v)), None)
    lines += [
        f"- Versions: {len(versions)}, latest v{versions[-1].version}",
        f"- In production: {f'v{production.version}' if production else 'none'}",
        "",
        "| Version | Registered | Checkpoint | Code | Train data | Test data | Validation "
        "| Test | Deployed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for version in reversed(versions):
        cells = [
            f"v{version.version}",
            version.created.strftime("%Y-%m-%d %H:%M"),
            f"`{version.checkpoint_uuid[:12]}`",
            _code(version),
            _data(version, "train"),
            _data(version, "test"),
            _short_metrics(_metrics(version, "validation")),
            _short_metrics(_metrics(version, "test")),
            _deployments(version),
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += ["", "## Versions", ""]
    for index in range(len(versions) - 1, -1, -1):
        previous = versions[index - 1] if index > 0 else None
        lines += _details(versions[index], previous)
    return "\n".join(lines)
