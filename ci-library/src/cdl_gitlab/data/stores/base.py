"""The ``DataStore`` interface (ML Data); :func:`cdl_gitlab.data.stores.open_store` picks the
profile's backend.

A store holds repos; a repo has branches; a branch points at its head commit; a commit is an
immutable snapshot of files with a parent, a message and a provenance (input commits and the
hash of the spec that produced it). ``put`` replaces the branch's whole tree by ``source``.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from cdl_gitlab.data.commits import Commit, Provenance
from cdl_gitlab.data.errors import DataError

DEFAULT_BRANCH = "master"

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_repo_name(name: str) -> str:
    if not _REPO_RE.match(name):
        raise DataError(f"invalid repo name {name!r}: use letters, digits, '-' and '_'")
    return name


def check_branch_name(name: str) -> str:
    if not _BRANCH_RE.match(name):
        raise DataError(f"invalid branch name {name!r}: use letters, digits, '.', '-' and '_'")
    return name


def normalize_path(path: str) -> str:
    """A file path inside a repo as a relative POSIX path; rejects ``..`` and empty paths."""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise DataError(f"invalid file path {path!r} inside a data repo")
    return "/".join(parts)


def iter_folder(folder: Path) -> Iterator[tuple[str, Path]]:
    """The regular files under ``folder`` as ``(relative POSIX path, path)``, in sorted order
    of the relative path, one at a time: each folder's names are sorted with a sub-folder's
    name followed by ``/``, which orders the full paths as ``sorted()`` would, so no list of
    every path is built (only one folder's names at a time). Links to folders are not
    followed (as :func:`os.walk`); links to files are read."""
    names: list[str] = []
    with os.scandir(folder) as scan:  # DirEntry objects are dropped: names cost less
        for entry in scan:
            real_dir = entry.is_dir(follow_symlinks=False)
            names.append(entry.name + "/" if real_dir else entry.name)
    names.sort()
    for name in names:
        if name.endswith("/"):
            for rel, path in iter_folder(folder / name[:-1]):
                yield f"{name}{rel}", path
        else:
            path = folder / name
            if path.is_file():
                yield name, path


def iter_source(
    source: str | os.PathLike[str] | Mapping[str, bytes],
) -> Iterator[tuple[str, Path | bytes]]:
    """The files of a put source, sorted by path, one at a time: a folder (walked, see
    :func:`iter_folder`) or a mapping path -> bytes (a later path equal to an earlier one once
    normalized wins)."""
    if isinstance(source, Mapping):
        items = {normalize_path(path): data for path, data in source.items()}
        return iter(sorted(items.items()))
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"cannot put {folder}: not a folder")
    return iter_folder(folder)


class DataStore(abc.ABC):
    """Versioned ML Data: the same operations on the local store and on Pachyderm."""

    @abc.abstractmethod
    def create_repo(self, repo: str, description: str = "") -> None:
        """Create ``repo`` if it does not exist (idempotent)."""

    @abc.abstractmethod
    def list_repos(self) -> list[str]: ...

    @abc.abstractmethod
    def list_branches(self, repo: str) -> dict[str, str]:
        """Branch name -> head commit id ('' for a branch without commits)."""

    @abc.abstractmethod
    def create_branch(self, repo: str, branch: str, from_ref: str) -> Commit:
        """Point ``branch`` at the commit ``from_ref`` resolves to."""

    @abc.abstractmethod
    def put(
        self,
        repo: str,
        branch: str,
        source: str | os.PathLike[str] | Mapping[str, bytes],
        message: str = "",
        provenance: Provenance | None = None,
    ) -> Commit:
        """Make ``source`` (a folder or a mapping path -> bytes) the new tree of ``branch``."""

    @abc.abstractmethod
    def resolve(self, repo: str, ref: str) -> Commit:
        """The commit a branch name or a commit id stands for."""

    @abc.abstractmethod
    def list_files(self, repo: str, ref: str) -> list[str]:
        """Every file path at ``ref``, sorted."""

    @abc.abstractmethod
    def read(self, repo: str, ref: str, path: str) -> bytes: ...

    def read_many(self, repo: str, ref: str, paths: list[str] | None = None) -> dict[str, bytes]:
        """Path -> content of ``paths`` (default: every file) at one commit."""
        commit = self.resolve(repo, ref).id
        wanted = self.list_files(repo, commit) if paths is None else paths
        return {normalize_path(path): self.read(repo, commit, path) for path in wanted}

    @abc.abstractmethod
    def checkout(self, repo: str, ref: str, dest: str | os.PathLike[str]) -> Commit:
        """Write the files at ``ref`` into the folder ``dest`` (created; must be empty)."""

    @abc.abstractmethod
    def history(self, repo: str, ref: str) -> list[Commit]:
        """The commit at ``ref`` and its ancestors, newest first."""

    def head(self, repo: str, branch: str) -> Commit | None:
        """The head commit of ``branch``, or None if the repo or branch has no commit."""
        if repo not in self.list_repos() or not self.list_branches(repo).get(branch):
            return None
        return self.resolve(repo, branch)

    def provenance(self, repo: str, ref: str) -> Provenance:
        return self.resolve(repo, ref).provenance
