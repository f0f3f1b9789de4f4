"""``cdl model train|search|register|secrets|evaluate|predict|report|lint``: the model pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.model.cluster import ClusterRun


def _version(text: str | None) -> int | None:
    if text is None or text == "latest":
        return None
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise click.BadParameter(f"{text!r} is not a version (use 3, v3 or latest)")
    return int(digits)


config_option = click.option(
    "-c",
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Experiment config (default: training.config / training.search_config of cdl.yaml).",
)


@click.group()
def model() -> None:
    """Train, search, evaluate and report on the project's model."""


def _echo_cluster_run(settings: Settings, run: ClusterRun) -> None:
    click.echo(f"experiment {run.experiment_id} completed on {settings.determined_master}")
    if run.version is not None:
        click.echo(f"registered {run.version.model} v{run.version.version}")


@model.command()
@config_option
@click.option("--max-steps", type=click.IntRange(min=1), help="Train this many batches instead.")
@click.option(
    "--no-register",
    is_flag=True,
    help="Do not register the checkpoint (cluster: the experiment's best checkpoint).",
)
@pass_app
def train(app: AppContext, config: Path | None, max_steps: int | None, no_register: bool) -> None:
    """Train one trial: off-cluster (local profile) or as a Determined experiment (cluster)."""
    from cdl_gitlab.model.train import resolve_config, train_local, train_on_cluster

    settings = app.settings
    path = resolve_config(settings, config, settings.config.training.config)
    if settings.profile == "cluster":
        run = train_on_cluster(settings, path, max_steps, register=not no_register)
        _echo_cluster_run(settings, run)
        return
    result = train_local(settings, path, max_steps=max_steps, register=not no_register)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.validation.items()))
    click.echo(f"experiment {result.experiment_id}: {shown}")
    click.echo(f"checkpoint {result.checkpoint_uuid} ({result.checkpoint_path})")
    click.echo(f"tensorboard --logdir {result.tensorboard}")
    if result.version is not None:
        click.echo(f"registered {result.version.model} v{result.version.version}")


@model.command()
@config_option
@click.option("--max-trials", type=click.IntRange(min=1), help="Override searcher.max_trials.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the best config (default: const.best.yaml beside the search config).",
)
@click.option("--register", is_flag=True, help="Register the best trial's checkpoint.")
@pass_app
def search(
    app: AppContext,
    config: Path | None,
    max_trials: int | None,
    output: Path | None,
    register: bool,
) -> None:
    """Hyperparameter search: Optuna with successive halving (local) or adaptive ASHA (cluster)."""
    from cdl_gitlab.model.search import search_local, search_on_cluster
    from cdl_gitlab.model.train import resolve_config

    settings = app.settings
    path = resolve_config(settings, config, settings.config.training.search_config)
    if settings.profile == "cluster":
        _echo_cluster_run(settings, search_on_cluster(settings, path, register=register))
        return
    result = search_local(settings, path, max_trials=max_trials, output=output, register=register)
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(result.trials.items()))
    click.echo(f"experiment {result.experiment_id}: {counts} ({result.wall_seconds:.0f} s)")
    if result.best_config_path is None:
        raise CDLError(f"experiment {result.experiment_id}: no trial completed")
    click.echo(f"best trial {result.best_trial_id}: {result.best_value:.4f}")
    click.echo(f"wrote {result.best_config_path}")
    if result.version is not None:
        click.echo(f"registered {result.version.model} v{result.version.version}")


@model.command()
@click.argument("experiment_id", type=click.IntRange(min=1))
@pass_app
def register(app: AppContext, experiment_id: int) -> None:
    """Register the best checkpoint of EXPERIMENT_ID (by its searcher metric): a local
    experiment, or on the cluster profile one that ran on the Determined master."""
    settings = app.settings
    if settings.profile == "cluster":
        from cdl_gitlab.model.cluster import register_cluster_experiment

        version = register_cluster_experiment(settings, experiment_id)
    else:
        from cdl_gitlab.model.register import register_local_experiment

        version = register_local_experiment(settings, experiment_id)
    click.echo(
        f"registered {version.model} v{version.version} (checkpoint {version.checkpoint_uuid})"
    )


@model.command("secrets")
@click.option(
    "--image",
    default="",
    help="Training image whose registry the pull secret is for (default: $CDL_TRAIN_IMAGE).",
)
@pass_app
def secrets(app: AppContext, image: str) -> None:
    """Create or check the trials' Kubernetes Secrets in Determined's namespace
    (cluster.trial_secret, cluster.image_pull_secret), as cluster submission does."""
    from cdl_gitlab.model.trial_secrets import ensure_trial_secrets

    settings = app.settings
    if settings.profile != "cluster":
        raise CDLError(
            "the trials' Secrets are Kubernetes Secrets: use the cluster profile "
            "(--profile cluster or CDL_PROFILE=cluster)"
        )
    lines = ensure_trial_secrets(settings, image.strip(), required=True)
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo("cluster.trial_secret and cluster.image_pull_secret are empty: nothing to do")


@model.command()
@click.option("--model", "model_name", help="Model name (default: model.name of cdl.yaml).")
@click.option("--version", "version", help="Version (default: $CDL_MODEL_VERSION or latest).")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write metrics.txt, report.md and plots (default: reports/model).",
)
@click.option("--no-fail", is_flag=True, help="Exit 0 even if the gate fails.")
@pass_app
def evaluate(
    app: AppContext,
    model_name: str | None,
    version: str | None,
    report_dir: Path | None,
    no_fail: bool,
) -> None:
    """The evaluation gate: test metrics, registry metadata, report; fails below threshold."""
    from cdl_gitlab.model.evaluate import GateFailed, evaluate_version

    result = evaluate_version(app.settings, model_name, _version(version), report_dir=report_dir)
    click.echo(result.message)
    click.echo(f"report: {result.artifacts.get('report')}")
    if not result.passed and not no_fail:
        raise GateFailed(result.message)


@model.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_name", help="Model name (default: model.name of cdl.yaml).")
@click.option("--version", "version", help="Version (default: latest).")
@pass_app
def predict(
    app: AppContext, inputs: tuple[str, ...], model_name: str | None, version: str | None
) -> None:
    """Predict the classes of files (text files or images) with a registered version."""
    import tempfile

    from cdl_gitlab.model.predictor import load_predictor
    from cdl_gitlab.registry import open_registry

    settings = app.settings
    registry = open_registry(settings)
    found = registry.get_version(model_name or settings.config.model.name, _version(version))
    data = [Path(path).read_bytes() for path in inputs]
    with tempfile.TemporaryDirectory(prefix="cdl-predict-") as scratch:
        folder = found.path if found.path and Path(found.path).is_dir() else None
        folder = folder or registry.download(found.model, found.version, Path(scratch) / "v")
        predictions = load_predictor(folder).predict(data)
    for path, prediction in zip(inputs, predictions, strict=True):
        click.echo(json.dumps({"input": path, **prediction}))


@model.command()
@click.option("--model", "model_name", help="Model name (default: model.name of cdl.yaml).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)
@pass_app
def report(app: AppContext, model_name: str | None, output: Path | None) -> None:
    """The model card: every version with checkpoint ids, data, metrics and deployments."""
    from cdl_gitlab.fsutil import atomic_write_text
    from cdl_gitlab.registry import open_registry
    from cdl_gitlab.registry.model_card import model_card

    settings = app.settings
    card = model_card(open_registry(settings), model_name or settings.config.model.name)
    if output:
        atomic_write_text(output, card)
        click.echo(f"wrote {output}")
    else:
        click.echo(card, nl=False)


@model.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def lint(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Validate experiment configs (default: the three of cdl.yaml's training section)."""
    from cdl_gitlab.model.config_lint import lint_paths

    if not paths:
        training = app.settings.config.training
        names = (training.config, training.search_config, training.distributed_config)
        paths = tuple(p for p in map(app.settings.path, names) if p.is_file())
        if not paths:
            raise CDLError("no experiment configs found (give paths, e.g. model/const.yaml)")
    code = lint_paths(list(paths))
    if code:
        sys.exit(code)
