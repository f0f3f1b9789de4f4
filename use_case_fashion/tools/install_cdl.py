"""Install the CDL library (distribution ``cdl-gitlab``, command ``cdl``) with pip.

Where the package comes from, first match wins:

1. ``CDL_SOURCE``: a CDL checkout (its ``ci-library/``), the ``ci-library`` folder itself
   (both installed editable) or a wheel file.
2. ``CDL_INDEX_URL``: the package registry of the CDL library project (a PyPI "simple"
   index). Release ``--version`` of ``cdl-gitlab`` is downloaded from that index only,
   without dependencies; the dependencies then come from the default index, pinned by
   the constraints file. No other index is ever asked for the package itself.
3. Where this project was rendered from, as ``.copier-answers.yml`` records it: a local
   template folder (its ``ci-library/``), or a git URL at the recorded commit.

The Makefile (``make setup``) and the Dockerfiles run it; ``--dry-run`` prints the pip
commands instead of running them. Standard library only, plus PyYAML to read the answers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "cdl-gitlab"
LIBRARY_FOLDER = "ci-library"
RELEASE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
# Copier's shortcuts for hosted git repositories.
GIT_SHORTCUTS = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}
# pip settings that would add another place to find the package.
OTHER_SOURCES = frozenset(
    {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONFIG_FILE"}
)
SCP_LIKE = re.compile(r"^(?P<user>[\w.-]+)@(?P<host>[\w.-]+):(?P<path>[^/].*)$")


class InstallError(Exception):
    """The package cannot be installed as configured; the message says how to fix it."""


@dataclass(frozen=True)
class Source:
    """Where the package comes from: a pip requirement, maybe after a download."""

    description: str
    requirement: str = ""
    editable: str = ""
    index_url: str = ""
    folder: Path | None = None  # a local library folder, built from a clean copy


# What a local library folder may hold besides its sources: build leftovers that setuptools
# would put into the wheel (it reuses an existing build/ tree) or stale metadata.
BUILD_LEFTOVERS = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc")


def _extras(extras: str) -> str:
    return f"[{extras}]" if extras else ""


def _library_folder(path: Path) -> Path | None:
    for candidate in (path / LIBRARY_FOLDER, path):
        if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "cdl_gitlab").is_dir():
            return candidate
    return None


def source_from_path(value: str, extras: str, base: Path) -> Source:
    """``CDL_SOURCE``: a checkout, its ``ci-library`` folder or a wheel."""
    path = (base / Path(value).expanduser()).resolve()
    if path.is_file() and path.suffix == ".whl":
        return Source(
            f"wheel {path}", requirement=f"{DISTRIBUTION}{_extras(extras)} @ {path.as_uri()}"
        )
    folder = _library_folder(path)
    if folder is None:
        raise InstallError(
            f"CDL_SOURCE={value}: neither a CDL checkout (with {LIBRARY_FOLDER}/), "
            "its ci-library folder nor a .whl file"
        )
    return Source(f"checkout {folder} (editable)", editable=f"{folder}{_extras(extras)}")


def git_url(source: str) -> str | None:
    """Copier's ``_src_path`` as a URL that pip's ``git+`` understands, or None (not git)."""
    for shortcut, prefix in GIT_SHORTCUTS.items():
        if source.startswith(shortcut):
            path = source[len(shortcut) :]
            return prefix + (path if path.endswith(".git") else f"{path}.git")
    if source.startswith("git+"):
        return source[len("git+") :]
    if source.startswith(("https://", "http://", "ssh://", "git://", "file://")):
        return source
    match = SCP_LIKE.match(source)
    if match:
        return f"ssh://{match['user']}@{match['host']}/{match['path']}"
    return None


def git_revision(commit: str) -> str:
    """The revision pip checks out for Copier's ``_commit`` (``git describe`` output)."""
    described = re.match(r"^.+-[0-9]+-g(?P<hash>[0-9a-f]{7,40})$", commit)
    return described["hash"] if described else commit


def source_from_answers(answers: Mapping[str, object], extras: str, project: Path) -> Source:
    """The template the project was rendered from: a local folder or a git URL."""
    raw_source = answers.get("_src_path")
    if not isinstance(raw_source, str) or not raw_source:
        raise InstallError(
            ".copier-answers.yml records no template source (_src_path): set CDL_INDEX_URL "
            "to the CDL library's package registry, or CDL_SOURCE to a CDL checkout"
        )
    url = git_url(raw_source)
    if url is None or url.startswith("file://"):
        local = Path(raw_source.removeprefix("file://")).expanduser()
        folder = _library_folder((project / local).resolve())
        if folder is None:
            raise InstallError(
                f"the template source {raw_source} recorded in .copier-answers.yml is not a "
                f"CDL checkout seen from {project} (no {LIBRARY_FOLDER}/ there): set "
                "CDL_SOURCE=/path/to/cdl or CDL_INDEX_URL"
            )
        return Source(
            f"the local template {folder.parent}",
            requirement=f"{DISTRIBUTION}{_extras(extras)} @ {folder.as_uri()}",
            folder=folder,
        )
    commit = answers.get("_commit")
    if not isinstance(commit, str) or not commit:
        raise InstallError(
            f".copier-answers.yml records the git template {raw_source} without a commit "
            "(_commit): set CDL_INDEX_URL or CDL_SOURCE"
        )
    revision = git_revision(commit)
    return Source(
        f"{raw_source} at {revision}",
        requirement=(
            f"{DISTRIBUTION}{_extras(extras)} @ git+{url}@{revision}#subdirectory={LIBRARY_FOLDER}"
        ),
    )


def read_answers(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise InstallError(
            f"{path} not found: set CDL_INDEX_URL to the CDL library's package registry, "
            "or CDL_SOURCE to a CDL checkout"
        )
    import yaml

    answers = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(answers, dict):
        raise InstallError(f"{path}: not a mapping of Copier answers")
    return answers


def choose_source(
    env: Mapping[str, str], extras: str, version: str, answers_path: Path | None
) -> Source:
    """Apply the order of the module docstring (no answers file: only 1 and 2)."""
    if env.get("CDL_SOURCE"):
        return source_from_path(env["CDL_SOURCE"], extras, Path.cwd())
    if env.get("CDL_INDEX_URL"):
        if not RELEASE.match(version):
            raise InstallError(
                f"the package registry holds releases X.Y.Z, not {version!r}: set "
                "ci_library_version to a release, or CDL_SOURCE to a checkout"
            )
        return Source(
            f"release {version} from {env['CDL_INDEX_URL']} only",
            requirement=f"{DISTRIBUTION}=={version}",
            index_url=env["CDL_INDEX_URL"],
        )
    if answers_path is None:
        raise InstallError(
            "set CDL_INDEX_URL to the CDL library's package registry (a docker build: "
            "--build-arg CDL_INDEX_URL=...), or CDL_SOURCE to a CDL checkout or wheel"
        )
    return source_from_answers(read_answers(answers_path), extras, answers_path.parent.resolve())


def _pip(python: str, *args: str, env: Mapping[str, str] | None, dry_run: bool) -> None:
    command = [python, "-m", "pip", *args]
    print("+ " + shlex.join(command), flush=True)
    if not dry_run:
        subprocess.run(command, check=True, env=None if env is None else dict(env))


def download_release(source: Source, extras: str, python: str, dest: Path, dry_run: bool) -> str:
    """Fetch the release wheel from the one index; the requirement that installs it."""
    # Only this index: no other index or find-links from the environment or pip's config.
    env = {k: v for k, v in os.environ.items() if k not in OTHER_SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull
    _pip(
        python,
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--index-url",
        source.index_url,
        "--dest",
        str(dest),
        source.requirement,
        env=env,
        dry_run=dry_run,
    )
    version = source.requirement.split("==", 1)[1]
    wheels = sorted(dest.glob(f"cdl_gitlab-{version}-*.whl"))
    if dry_run:
        wheel = dest / f"cdl_gitlab-{version}-py3-none-any.whl"
    elif not wheels:
        raise InstallError(f"{source.index_url} served no wheel of {DISTRIBUTION} {version}")
    else:
        wheel = wheels[0]
    return f"{DISTRIBUTION}{_extras(extras)} @ {wheel.resolve().as_uri()}"


def install(args: argparse.Namespace, env: Mapping[str, str]) -> Source:
    answers = Path(args.answers) if args.answers else None
    source = choose_source(env, args.extras, args.version, answers)
    print(f"install_cdl: {DISTRIBUTION} from {source.description}", flush=True)
    constraints = ["-c", args.constraints] if args.constraints else []
    extra = [arg for requirement in args.requirements for arg in ("-r", requirement)]
    with tempfile.TemporaryDirectory(prefix="cdl-wheel-") as scratch:
        if source.editable:
            package = ["-e", source.editable]
        elif source.index_url:
            package = [
                download_release(source, args.extras, args.python, Path(scratch), args.dry_run)
            ]
        elif source.folder is not None:
            clean = Path(scratch) / LIBRARY_FOLDER
            if not args.dry_run:
                shutil.copytree(source.folder, clean, ignore=BUILD_LEFTOVERS)
            package = [f"{DISTRIBUTION}{_extras(args.extras)} @ {clean.as_uri()}"]
        else:
            package = [source.requirement]
        _pip(
            args.python,
            "install",
            "--quiet",
            *constraints,
            *package,
            *extra,
            *args.packages,
            env=None,
            dry_run=args.dry_run,
        )
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--extras", default="", help="extras of cdl-gitlab, comma-separated")
    parser.add_argument("--version", default="", help="the release to take from CDL_INDEX_URL")
    parser.add_argument("--constraints", default="", help="pip constraints file")
    parser.add_argument(
        "--answers", default=".copier-answers.yml", help='Copier\'s answers ("": none)'
    )
    parser.add_argument(
        "-r", "--requirements", action="append", default=[], help="also install this file"
    )
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip installs")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands only")
    parser.add_argument("packages", nargs="*", help="more requirements to install alongside")
    args = parser.parse_args(argv)
    try:
        install(args, os.environ)
    except InstallError as exc:
        print(f"install_cdl: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"install_cdl: error: pip failed (exit code {exc.returncode})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
