"""``cdl template update`` and ``cdl template check-conflicts``: template updates of a
rendered project (see :mod:`cdl_gitlab.template`)."""

from __future__ import annotations

from pathlib import Path

import click

from cdl_gitlab.template.conflicts import check_conflicts, find_conflicts

_PROJECT_DIR = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The rendered project (a git work tree with .copier-answers.yml).",
)


@click.group("template")
def template() -> None:
    """Updates from the CDL Copier template."""


@template.command("check-conflicts")
@_PROJECT_DIR
def check_conflicts_cmd(project_dir: Path) -> None:
    """Fail on leftover conflicts of a template update: lines starting with <<<<<<< or
    >>>>>>> (and ======= between them) in the project's files, or *.rej files."""
    for conflict in find_conflicts(project_dir):
        click.echo(conflict.describe())
    check_conflicts(project_dir)
    click.echo("no template-update conflicts")


@template.command("update")
@_PROJECT_DIR
@click.option(
    "--target-branch",
    default="dev",
    show_default=True,
    help="Branch the merge request targets (the default/staging branch).",
)
@click.option(
    "--token-variable",
    default="CDL_TEMPLATE_UPDATE_TOKEN",
    show_default=True,
    help="NAME of the variable with the project access token (api, write_repository).",
)
@click.option(
    "--changelog",
    "changelog_path",
    default="ci-library/CHANGELOG.md",
    show_default=True,
    help="Path of the library CHANGELOG in the template repository.",
)
def update_cmd(
    project_dir: Path, target_branch: str, token_variable: str, changelog_path: str
) -> None:
    """When a newer template release exists: copier update on branch cdl-update/<version>,
    push it and open (or update) its merge request into the target branch."""
    from cdl_gitlab.template.update import options_from_env, update

    options = options_from_env(project_dir, token_variable, target_branch, changelog_path)
    click.echo(update(options).summary())
