"""The ``cdl`` command line: ``cdl [--profile P] data|model|deploy|lineage|config|template ...``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdl_gitlab import __version__
from cdl_gitlab.cli import (
    config_cmd,
    data_cmd,
    deploy_cmd,
    lineage_cmd,
    model_cmd,
    monitor_cmd,
    registry_cmd,
    template_cmd,
)
from cdl_gitlab.cli.app import AppContext
from cdl_gitlab.errors import CDLError
from cdl_gitlab.logs import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cdl")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="cdl.yaml to use (default: $CDL_CONFIG or the nearest cdl.yaml upwards).",
)
@click.option(
    "--profile",
    type=click.Choice(["local", "cluster"]),
    help="Profile to run on (default: $CDL_PROFILE or cdl.yaml's profile).",
)
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, profile: str | None, verbose: int) -> None:
    """CDL: the data, model and deployment pipelines of a deep-learning project."""
    setup_logging(verbose)
    ctx.obj = AppContext(config_path, profile)


for _group in (
    config_cmd.config,
    data_cmd.data,
    deploy_cmd.deploy,
    monitor_cmd.monitor,
    model_cmd.model,
    lineage_cmd.lineage,
    registry_cmd.registry,
    template_cmd.template,
):
    cli.add_command(_group)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: CDL errors become one clear message and their exit code."""
    try:
        cli.main(args=argv, prog_name="cdl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CDLError as exc:
        click.echo(f"cdl: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
