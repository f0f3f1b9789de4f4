"""The ``cdl`` command line: ``cdl [--profile P] data|model|deploy|lineage|config|template ...``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdl_gitlab import __version__
from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.errors import CDLError
from cdl_gitlab.logs import setup_logging


class AppContext:
    """What every subcommand gets: the global options and, on demand, the settings."""

    def __init__(self, config_path: Path | None, profile: str | None) -> None:
        self.config_path = config_path
        self.profile_override = profile
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.profile_override)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


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


def _register_commands() -> None:
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

    cli.add_command(config_cmd.config)
    cli.add_command(data_cmd.data)
    cli.add_command(deploy_cmd.deploy)
    cli.add_command(monitor_cmd.monitor)
    cli.add_command(model_cmd.model)
    cli.add_command(lineage_cmd.lineage)
    cli.add_command(registry_cmd.registry)
    cli.add_command(template_cmd.template)


_register_commands()


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
