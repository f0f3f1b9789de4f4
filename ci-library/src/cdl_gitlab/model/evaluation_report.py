"""The evaluation report: ``metrics.txt`` (OpenMetrics), ``report.md`` and PNG plots.

The Markdown compares the evaluated version with the previous version and with the version in
production, if any, so a merge request shows what changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.fsutil import atomic_write_bytes, atomic_write_text
from cdl_gitlab.registry.base import ModelVersion

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.model.evaluate import Evaluation


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def openmetrics(result: Evaluation) -> str:
    """Test metrics in the OpenMetrics text format (GitLab's metrics report)."""
    lines = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"# HELP {name} {help_text}")
        lines.extend(f"{name}{labels} {value:.6g}" for labels, value in samples)

    gauge("model_test_accuracy", "Accuracy on the held-out test set.", [("", result.accuracy)])
    gauge("model_accuracy_threshold", "Accuracy the gate requires.", [("", result.threshold)])
    for metric in ("precision", "recall", "f1"):
        gauge(
            f"model_test_{metric}_macro", f"Macro-averaged {metric}.", [("", result.macro[metric])]
        )
        gauge(
            f"model_test_{metric}",
            f"Per-class {metric} on the test set.",
            [
                (f'{{class="{_label(name)}"}}', values[metric])
                for name, values in result.per_class.items()
            ],
        )
    gauge("model_test_items", "Number of test items.", [("", float(result.n_items))])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _png(figure: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def confusion_png(result: Evaluation) -> bytes:
    from matplotlib.figure import Figure

    size = max(4.0, 0.6 * len(result.classes) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    image = axes.imshow(result.confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = range(len(result.classes))
    axes.set_xticks(ticks, result.classes, rotation=45, ha="right")
    axes.set_yticks(ticks, result.classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{result.model} v{result.version}: confusion matrix (test)")
    peak = max((max(row) for row in result.confusion), default=0)
    for i, row in enumerate(result.confusion):
        for j, count in enumerate(row):
            color = "white" if peak and count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=color)
    return _png(figure)


def training_series(settings: Settings, version: ModelVersion) -> dict[str, list[tuple[int, dict]]]:
    """Training and validation series of the version's trial from the experiment registry."""
    from cdl_gitlab.tracking import TrackingError, open_experiment_registry

    experiment_id = version.metadata.get("experiment_id")
    trial_id = version.metadata.get("trial_id")
    if settings.profile != "local" or experiment_id is None:
        return {}
    try:
        experiment = open_experiment_registry(settings).get_experiment(int(experiment_id))
    except TrackingError:
        return {}
    for trial in experiment.trials:
        if trial_id is None or trial.id == trial_id:
            return {
                group: [(report.steps_completed, report.metrics) for report in reports]
                for group, reports in trial.metrics.items()
            }
    return {}


def curves_png(title: str, series: dict[str, list[tuple[int, dict]]]) -> bytes | None:
    from matplotlib.figure import Figure

    panels = [
        ("loss", ("training", "loss"), ("validation", "validation_loss")),
        ("accuracy", ("training", "accuracy"), ("validation", "validation_accuracy")),
    ]
    figure = Figure(figsize=(10, 4))
    axes_list = figure.subplots(1, 2)
    plotted = False
    for axes, (name, *lines) in zip(axes_list, panels, strict=True):
        for group, key in lines:
            points = [
                (steps, values[key]) for steps, values in series.get(group, []) if key in values
            ]
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", label=f"{group} {name}")
                plotted = True
        axes.set_xlabel("batches")
        axes.set_title(name)
        axes.legend()
    figure.suptitle(title)
    return _png(figure) if plotted else None


def _value(values: dict[str, Any] | None, key: str) -> str:
    value = (values or {}).get(key)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _row(label: str, version: ModelVersion, test: dict[str, Any] | None) -> str:
    metrics = version.metadata.get("metrics") or {}
    train = ((version.metadata.get("lineage") or {}).get("data") or {}).get("train") or {}
    commit = str(train.get("commit") or "-")[:12]
    return (
        f"| {label} | v{version.version} | {_value(test, 'accuracy')} | "
        f"{_value(test, 'f1_macro')} | "
        f"{_value(metrics.get('validation'), 'validation_accuracy')} | `{commit}` |"
    )


def comparison(registry: Any, version: ModelVersion, result: Evaluation) -> list[str]:
    from cdl_gitlab.registry import production_version

    lines = [
        "| | version | test accuracy | test macro F1 | validation accuracy | train data |",
        "|---|---|---|---|---|---|",
        _row("this", version, result.metrics()),
    ]
    earlier = [v for v in registry.list_versions(version.model) if v.version < version.version]
    if earlier:
        previous = earlier[-1]
        lines.append(
            _row("previous", previous, (previous.metadata.get("metrics") or {}).get("test"))
        )
    production = production_version(registry, version.model)
    if production is not None and production.version != version.version:
        test = (production.metadata.get("metrics") or {}).get("test")
        lines.append(_row("production", production, test))
    elif production is None:
        lines.append("")
        lines.append("No version is in production yet.")
    return lines


def markdown(result: Evaluation, table: list[str], plots: dict[str, str], curves_note: str) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# {result.model} v{result.version}: evaluation",
        "",
        f"**Gate {verdict}**: test accuracy {result.accuracy:.4f}, threshold "
        f"{result.threshold:.4f} ({result.n_items} items of "
        f"{result.test_data['repo']}@{result.test_data['branch']} "
        f"`{result.test_data['commit'][:12]}`).",
        "",
        "## Comparison",
        "",
        *table,
        "",
        "## Per class (test)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, values in result.per_class.items():
        lines.append(
            f"| {name} | {values['precision']:.4f} | {values['recall']:.4f} | "
            f"{values['f1']:.4f} | {int(values['support'])} |"
        )
    lines += [
        f"| macro | {result.macro['precision']:.4f} | {result.macro['recall']:.4f} | "
        f"{result.macro['f1']:.4f} | {result.n_items} |",
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{title}]({file})" for title, file in plots.items()]
    if curves_note:
        lines += ["", curves_note]
    return "\n".join(lines) + "\n"


def write_report(
    settings: Settings,
    registry: Any,
    version: ModelVersion,
    result: Evaluation,
    folder: Path,
) -> dict[str, Path]:
    """Write ``metrics.txt``, ``confusion_matrix.png``, ``training_curves.png``, ``report.md``."""
    folder = Path(folder)
    artifacts = {"metrics": atomic_write_text(folder / "metrics.txt", openmetrics(result))}
    artifacts["confusion_matrix"] = atomic_write_bytes(
        folder / "confusion_matrix.png", confusion_png(result)
    )
    plots = {"confusion matrix": "confusion_matrix.png"}
    curves = curves_png(
        f"{result.model} v{result.version}: training", training_series(settings, version)
    )
    note = ""
    if curves is not None:
        artifacts["training_curves"] = atomic_write_bytes(folder / "training_curves.png", curves)
        plots["training and validation curves"] = "training_curves.png"
    else:
        note = (
            "Training curves: no metrics of this version's trial in the local experiment registry."
        )
    table = comparison(registry, version, result)
    artifacts["report"] = atomic_write_text(
        folder / "report.md", markdown(result, table, plots, note)
    )
    return artifacts
