"""``cdl lineage [MODEL] [VERSION] [--json]``: what produced a registered model version."""

from __future__ import annotations

import json

import click

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.cli.registry_cmd import parse_version, version_record
from cdl_gitlab.lineage import format_lineage


def _looks_like_version(text: str) -> bool:
    return text == "latest" or text.removeprefix("v").isdigit()


@click.command("lineage")
@click.argument("model", required=False)
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the version record as JSON.")
@pass_app
def lineage(app: AppContext, model: str | None, version: str | None, as_json: bool) -> None:
    """Show the lineage of VERSION of MODEL (default: cdl.yaml's model, its latest version):
    code, data, experiment, checkpoint, metrics, hardware, environment, cost, logs and
    deployments."""
    if model is not None and version is None and _looks_like_version(model):
        model, version = None, model
    name = model or app.settings.config.model.name
    from cdl_gitlab.registry import open_registry

    found = open_registry(app.settings).get_version(name, parse_version(version))
    if as_json:
        record = version_record(found)
        record["lineage"] = found.metadata.get("lineage")
        click.echo(json.dumps(record, indent=2, sort_keys=True))
    else:
        click.echo(format_lineage(found))
