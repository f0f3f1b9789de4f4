"""``cdl data``: versioned ML Data, the data pipeline steps and specs, and labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.errors import CDLError

if TYPE_CHECKING:
    from cdl_gitlab.data.stores.base import DataStore


def _store(app: AppContext) -> DataStore:
    from cdl_gitlab.data.stores import open_store

    return open_store(app.settings)


@click.group()
def data() -> None:
    """Data pipeline: collect, split, validate (pipelines), label; versioned data repos."""


@data.command("collect")
@pass_app
def collect_cmd(app: AppContext) -> None:
    """Collect the raw data into <prefix>-raw, in the project's data.format."""
    from cdl_gitlab.data.steps import pipeline

    pipeline.collect(app.settings, _store(app), click.echo)


_RESPLIT = click.option(
    "--resplit",
    is_flag=True,
    help="Replace a split made by an earlier rule (items move between train and test once).",
)


@data.command("split")
@_RESPLIT
@pass_app
def split_cmd(app: AppContext, resplit: bool) -> None:
    """Split <prefix>-raw into <prefix>-train and <prefix>-test by content hash and seed."""
    from cdl_gitlab.data.steps import pipeline

    pipeline.split(app.settings, _store(app), click.echo, resplit)


@data.command("run")
@click.option(
    "--pipeline",
    "names",
    multiple=True,
    default=["all"],
    show_default=True,
    help="Pipeline name (repeatable) or 'all'.",
)
@pass_app
def run_cmd(app: AppContext, names: tuple[str, ...]) -> None:
    """Run the specs in data/pipelines locally (a no-op when inputs and spec are unchanged)."""
    from cdl_gitlab.data.errors import DataError
    from cdl_gitlab.data.pachyderm.runner import run_pipelines

    if app.settings.profile == "cluster":
        raise DataError(
            "cdl data run executes specs on the local profile; on the cluster "
            "profile Pachyderm runs them (cdl data deploy)"
        )
    selected = None if "all" in names else list(names)
    run_pipelines(app.settings, _store(app), selected, click.echo)


@data.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def lint_cmd(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Strictly check pipeline specs (default: data/pipelines) against pachyderm-sdk."""
    from cdl_gitlab.data.pachyderm.spec import lint_files

    targets = list(paths)
    if not targets:
        app: AppContext = ctx.obj
        try:
            root = app.settings.root
        except CDLError:  # no (valid) cdl.yaml: lint the working folder's specs
            root = Path.cwd()
        targets = [root / "data" / "pipelines"]
    count, problems = lint_files(targets)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"{count} pipeline spec(s) valid")


@data.command("deploy")
@click.option("--dry-run", is_flag=True, help="Print the specs that would be sent.")
@click.option(
    "--image-digest",
    default="",
    help="Pin the specs' image to this digest (sha256:...), the one CI's image build pushed.",
)
@pass_app
def deploy_cmd(app: AppContext, dry_run: bool, image_digest: str) -> None:
    """Create the pipelines' input repos, then create or update the pipelines on Pachyderm
    (image tag from $CDL_IMAGE_TAG, pull secret from cluster.image_pull_secret, created in
    Pachyderm's namespace from the deploy token when kubectl access is configured)."""
    from cdl_gitlab.data.pachyderm.create_pipelines import deploy_pipelines

    specs = deploy_pipelines(
        app.settings, dry_run=dry_run, image_digest=image_digest.strip(), echo=click.echo
    )
    if dry_run:
        for _name, spec in specs:
            click.echo(json.dumps(spec, indent=2))


@data.command("pipeline")
@_RESPLIT
@click.option(
    "--labels-dir",
    default="data/labels",
    show_default=True,
    help="Folder (relative to the project) of the Label Studio exports <split>.json to import.",
)
@pass_app
def pipeline_cmd(app: AppContext, resplit: bool, labels_dir: str) -> None:
    """Collect -> split -> validate pipelines -> labels; print the summary.

    On the cluster profile Pachyderm runs the pipelines and this waits for their outputs."""
    from cdl_gitlab.data.steps import pipeline

    pipeline.run_all(app.settings, _store(app), click.echo, resplit, labels_dir)


@data.command("log")
@click.argument("repo")
@click.argument("ref", required=False)
@pass_app
def log_cmd(app: AppContext, repo: str, ref: str | None) -> None:
    """History of a data repo's branch (default: data.branch), with provenance."""
    store = _store(app)
    for commit in store.history(repo, ref or app.settings.config.data.branch):
        click.echo(f"{commit.id}  {commit.created}  {commit.file_count} files  {commit.message}")
        for item in commit.provenance.inputs:
            click.echo(f"    input {item}")
        if commit.provenance.spec_hash:
            click.echo(f"    spec  {commit.provenance.spec_hash[:16]}")


@data.command("ls")
@click.argument("repo", required=False)
@click.argument("ref", required=False)
@pass_app
def ls_cmd(app: AppContext, repo: str | None, ref: str | None) -> None:
    """List data repos (and their branches), or the files of REPO at REF."""
    store = _store(app)
    if repo is None:
        for name in store.list_repos():
            branches = ", ".join(f"{b}={c[:12]}" for b, c in store.list_branches(name).items())
            click.echo(f"{name}  {branches}")
        return
    for path in store.list_files(repo, ref or app.settings.config.data.branch):
        click.echo(path)


@data.group("labels")
def labels() -> None:
    """The labels table and Label Studio tasks/exports."""


_split = click.option("--split", type=click.Choice(["train", "test"]), required=True)
_output = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: stdout).",
)


def _write(payload: object, output: Path | None) -> None:
    from cdl_gitlab.data.labels import dumps
    from cdl_gitlab.fsutil import atomic_write_bytes

    if output is None:
        click.echo(dumps(payload).decode("utf-8"), nl=False)
    else:
        atomic_write_bytes(output, dumps(payload))
        click.echo(f"wrote {output}", err=True)


@labels.command("import")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_split
@click.option(
    "--skip-imported",
    is_flag=True,
    help="Do nothing when this export is the split's last import and the table still has "
    "the rows it had then (e.g. `cdl data pipeline` imported it already).",
)
@pass_app
def labels_import(app: AppContext, export: Path, split: str, skip_imported: bool) -> None:
    """Import a Label Studio JSON export into the labels table (upsert by task id).

    Conflicting labels are reported one per line; the latest annotation is kept."""
    from cdl_gitlab.data.labeling import already_imported, import_payload, read_export

    payload = read_export(export)
    last = already_imported(app.settings, payload, split) if skip_imported else None
    if last is not None:
        click.echo(
            f"labels ({split}): {export} already imported (sha256 {last.digest[:12]}, "
            f"{last.rows} rows): skipped"
        )
        return
    report = import_payload(app.settings, _store(app), payload, split)
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(f"labels ({split}): {report}")


@labels.command("export-tasks")
@_split
@_output
@pass_app
def labels_export_tasks(app: AppContext, split: str, output: Path | None) -> None:
    """Write Label Studio tasks for the validated files of a split."""
    from cdl_gitlab.data.labeling import export_tasks

    _write(export_tasks(app.settings, _store(app), split), output)


@labels.command("generate")
@_split
@_output
@click.option("--import", "do_import", is_flag=True, help="Also import it into the table.")
@pass_app
def labels_generate(app: AppContext, split: str, output: Path | None, do_import: bool) -> None:
    """Label each validated file by its class folder (labeler cdl-folder-labeler)."""
    from cdl_gitlab.data.labeling import generate_export, import_payload

    store = _store(app)
    export = generate_export(app.settings, store, split)
    _write(export, output)
    if do_import:
        report = import_payload(app.settings, store, export, split)
        click.echo(f"labels ({split}): {report}", err=output is None)
