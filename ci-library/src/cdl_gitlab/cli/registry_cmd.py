"""``cdl registry list|show|add-metadata|download``: the model registry of the profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.errors import CDLError
from cdl_gitlab.registry.base import ModelVersion, in_production, merge_metadata


def parse_version(text: str | None) -> int | None:
    """``None``/``latest`` -> None, ``3`` or ``v3`` -> 3; else a usage error."""
    if text is None or text == "latest":
        return None
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not digits.isdigit() or int(digits) < 1:
        raise click.BadParameter(f"{text!r} is not a version (use 3, v3 or latest)")
    return int(digits)


def version_record(version: ModelVersion) -> dict[str, Any]:
    """A version as plain JSON-compatible data."""
    return {
        "model": version.model,
        "version": version.version,
        "checkpoint_uuid": version.checkpoint_uuid,
        "created": version.created.isoformat(),
        "path": str(version.path) if version.path else None,
        "metadata": version.metadata,
    }


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(assignments: tuple[str, ...]) -> dict[str, Any]:
    """``a.b=1 c=text`` -> ``{"a": {"b": 1}, "c": "text"}`` (values parsed as JSON if they can)."""
    result: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise click.BadParameter(f"{item!r}: use KEY=VALUE, with dots for nesting (a.b=1)")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise click.BadParameter(f"{item!r}: {part} is already set to a value")
            node = child
        if leaf in node:
            raise click.BadParameter(f"{item!r}: {key} is given twice")
        node[leaf] = _parse_value(raw)
    return result


@click.group("registry")
def registry() -> None:
    """The model registry: versions, their metadata and checkpoint files."""


@registry.command("list")
@click.argument("model", required=False)
@pass_app
def list_cmd(app: AppContext, model: str | None) -> None:
    """List models, or the versions of MODEL."""
    from cdl_gitlab.registry import open_registry

    reg = open_registry(app.settings)
    if model is None:
        names = reg.list_models()
        if not names:
            click.echo("no models registered yet")
        for name in names:
            click.echo(name)
        return
    versions = reg.list_versions(model)
    if not versions:
        click.echo(f"{model}: no versions yet")
    for version in versions:
        marker = "  [production]" if in_production(version) else ""
        created = version.created.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"v{version.version}  {created}  {version.checkpoint_uuid}{marker}")


@registry.command("show")
@click.argument("model")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_app
def show(app: AppContext, model: str, version: str | None, as_json: bool) -> None:
    """Show a version of MODEL (default: the latest) with all its metadata."""
    from cdl_gitlab.registry import open_registry

    found = open_registry(app.settings).get_version(model, parse_version(version))
    record = version_record(found)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
    else:
        click.echo(yaml.safe_dump(record, sort_keys=False, allow_unicode=True).rstrip())


@registry.command("add-metadata")
@click.argument("model")
@click.argument("version")
@click.argument("assignments", nargs=-1)
@click.option(
    "--file",
    "metadata_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON or YAML mapping to merge in.",
)
@click.option("--overwrite", is_flag=True, help="Replace values that differ instead of failing.")
@pass_app
def add_metadata(
    app: AppContext,
    model: str,
    version: str,
    assignments: tuple[str, ...],
    metadata_file: Path | None,
    overwrite: bool,
) -> None:
    """Merge metadata into VERSION of MODEL: KEY=VALUE pairs (a.b=1) and/or --file."""
    number = parse_version(version)
    if number is None:
        raise click.BadParameter("give an explicit version number", param_hint="VERSION")
    update: dict[str, Any] = {}
    if metadata_file is not None:
        loaded = yaml.safe_load(metadata_file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise CDLError(f"{metadata_file}: expected a mapping at the top level")
        update = loaded
    pairs = parse_assignments(assignments)
    if not update and not pairs:
        raise click.UsageError("nothing to add: give KEY=VALUE pairs or --file")
    from cdl_gitlab.registry import open_registry

    update = merge_metadata(update, pairs)  # one update: all of it applies, or none
    open_registry(app.settings).add_metadata(model, number, update, overwrite=overwrite)
    click.echo(f"metadata of {model} v{number} updated")


@registry.command("download")
@click.argument("model")
@click.argument("version", required=False)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to put the files in (default: ./checkpoints/<model>-v<version>).",
)
@pass_app
def download(app: AppContext, model: str, version: str | None, dest: Path | None) -> None:
    """Download the checkpoint files of a version of MODEL (default: the latest)."""
    from cdl_gitlab.registry import open_registry

    path = open_registry(app.settings).download(model, parse_version(version), dest)
    click.echo(str(path))
