"""``cdl config``: check and show the project's configuration."""

from __future__ import annotations

import json

import click

from cdl_gitlab.cli.app import AppContext, pass_app


@click.group()
def config() -> None:
    """Check and show cdl.yaml."""


@config.command("check")
@pass_app
def check(app: AppContext) -> None:
    """Validate cdl.yaml; exit non-zero with the offending keys if it is invalid."""
    settings = app.settings
    click.echo(f"{settings.root / 'cdl.yaml'}: valid (profile: {settings.profile})")


@config.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Print the effective configuration (defaults filled in) as JSON."""
    settings = app.settings
    payload = settings.config.model_dump(mode="json")
    payload["profile"] = settings.profile
    click.echo(json.dumps(payload, indent=2))
