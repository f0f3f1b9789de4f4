"""The local profile's versioned store: content-addressed files under ``<state_dir>/data``.

Layout::

    objects/<aa>/<sha256>            file contents, content-addressed, immutable
    repos/<repo>/repo.json           description
    repos/<repo>/commits/<id>.json   manifest {path: [sha256, size]}, parent, message, provenance
    repos/<repo>/branches/<branch>   the head commit id
    lock                             an exclusive file lock held by every writer

Commit id: the SHA-256 of the canonical JSON of (manifest, parent id, provenance). The same
tree put on the same parent with the same provenance always gets the same id, whatever the
time or message; putting a branch's current tree again is a no-op that returns the head.

Atomicity: ``put`` writes the objects first (each through a temporary file and a rename, then
one ``sync()`` for all of them: an fsync per object costs ~8x more), then the commit file, then
moves the branch head, each through a temporary file, fsync and rename. A crash before the
commit file leaves only unreferenced objects; a crash before the head moves leaves an
unreferenced commit file. In both cases the branch head and every existing commit are unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from cdl_gitlab.data.commits import Commit, Provenance
from cdl_gitlab.data.errors import DataError, NotFoundError
from cdl_gitlab.data.stores.base import (
    DataStore,
    check_branch_name,
    check_repo_name,
    iter_source,
    normalize_path,
)
from cdl_gitlab.fsutil import atomic_write_json, atomic_write_text, file_lock

Manifest = dict[str, list[Any]]  # path -> [sha256, size]


def commit_id(manifest: Manifest, parent: str | None, provenance: Provenance) -> str:
    """The content address of a commit (see the module docstring)."""
    payload = {"files": manifest, "parent": parent, "provenance": provenance.to_dict()}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class LocalStore(DataStore):
    """A ``DataStore`` in a folder; safe for concurrent processes on one machine."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._commits: dict[tuple[str, str], dict[str, Any]] = {}  # immutable: safe to cache

    # ---------------------------------------------------------------- paths and locking
    def _repo_dir(self, repo: str) -> Path:
        return self.root / "repos" / check_repo_name(repo)

    def _object_path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / digest

    def _locked(self) -> FileLock:
        return file_lock(self.root / "lock")

    def _require_repo(self, repo: str) -> Path:
        folder = self._repo_dir(repo)
        if not (folder / "repo.json").is_file():
            raise NotFoundError(f"data repo {repo!r} does not exist (known: {self.list_repos()})")
        return folder

    # ---------------------------------------------------------------- repos and branches
    def create_repo(self, repo: str, description: str = "") -> None:
        folder = self._repo_dir(repo)
        with self._locked():
            if (folder / "repo.json").is_file():
                return
            (folder / "commits").mkdir(parents=True, exist_ok=True)
            (folder / "branches").mkdir(parents=True, exist_ok=True)
            created = dt.datetime.now(dt.UTC).isoformat()
            record = {"description": description, "created": created}
            atomic_write_json(folder / "repo.json", record)

    def list_repos(self) -> list[str]:
        repos = self.root / "repos"
        if not repos.is_dir():
            return []
        return sorted(p.name for p in repos.iterdir() if (p / "repo.json").is_file())

    def list_branches(self, repo: str) -> dict[str, str]:
        folder = self._require_repo(repo) / "branches"
        return {
            p.name: p.read_text(encoding="utf-8").strip()
            for p in sorted(folder.iterdir())
            if not p.name.startswith(".")
        }

    def create_branch(self, repo: str, branch: str, from_ref: str) -> Commit:
        check_branch_name(branch)
        with self._locked():
            commit = self.resolve(repo, from_ref)
            atomic_write_text(self._repo_dir(repo) / "branches" / branch, commit.id + "\n")
        return self._with_branch(commit, branch)

    # ---------------------------------------------------------------- commits
    def _load_commit(self, repo: str, commit: str) -> dict[str, Any]:
        cached = self._commits.get((repo, commit))
        if cached is not None:
            return cached
        path = self._require_repo(repo) / "commits" / f"{commit}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"{repo}: no branch or commit {commit!r}") from None
        self._commits[(repo, commit)] = data
        return data

    @staticmethod
    def _to_commit(data: dict[str, Any]) -> Commit:
        files = data["files"]
        return Commit(
            repo=data["repo"],
            id=data["id"],
            branch=data["branch"],
            parent=data["parent"],
            message=data["message"],
            created=data["created"],
            provenance=Provenance.from_dict(data["provenance"]),
            file_count=len(files),
            size_bytes=sum(size for _, size in files.values()),
        )

    @staticmethod
    def _with_branch(commit: Commit, branch: str) -> Commit:
        return Commit(**{**commit.__dict__, "branch": branch})

    def _resolve_raw(self, repo: str, ref: str) -> tuple[dict[str, Any], str | None]:
        folder = self._require_repo(repo)
        branch_file = folder / "branches" / ref
        if ref and "/" not in ref and branch_file.is_file():
            head = branch_file.read_text(encoding="utf-8").strip()
            return self._load_commit(repo, head), ref
        if ref and all(c in "0123456789abcdef" for c in ref) and len(ref) >= 6:
            if len(ref) == 64:
                return self._load_commit(repo, ref), None
            matches = [p.stem for p in (folder / "commits").glob(f"{ref}*.json")]
            if len(matches) == 1:
                return self._load_commit(repo, matches[0]), None
            if len(matches) > 1:
                raise DataError(f"{repo}: commit prefix {ref!r} is ambiguous")
        branches = ", ".join(self.list_branches(repo)) or "none"
        raise NotFoundError(f"{repo}: no branch or commit {ref!r} (branches: {branches})")

    def resolve(self, repo: str, ref: str) -> Commit:
        data, branch = self._resolve_raw(repo, ref)
        commit = self._to_commit(data)
        return self._with_branch(commit, branch) if branch else commit

    def _manifest(self, repo: str, ref: str) -> Manifest:
        return self._resolve_raw(repo, ref)[0]["files"]

    def put(
        self,
        repo: str,
        branch: str,
        source: str | os.PathLike[str] | Mapping[str, bytes],
        message: str = "",
        provenance: Provenance | None = None,
    ) -> Commit:
        check_branch_name(branch)
        provenance = provenance or Provenance()
        folder = self._require_repo(repo)
        items = iter_source(source)
        with self._locked():
            manifest: Manifest = {}
            written = False
            for path, content in items:
                data = content if isinstance(content, bytes) else content.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                written = self._write_object(digest, data) or written
                manifest[path] = [digest, len(data)]
            if written:
                os.sync()  # every new object is durable before a commit refers to it
            branch_file = folder / "branches" / branch
            parent = branch_file.read_text("utf-8").strip() if branch_file.is_file() else None
            if parent:
                head = self._load_commit(repo, parent)
                if head["files"] == manifest and head["provenance"] == provenance.to_dict():
                    return self._with_branch(self._to_commit(head), branch)
            new_id = commit_id(manifest, parent, provenance)
            commit_file = folder / "commits" / f"{new_id}.json"
            if not commit_file.is_file():
                record = {
                    "id": new_id,
                    "repo": repo,
                    "branch": branch,
                    "parent": parent,
                    "message": message,
                    "created": dt.datetime.now(dt.UTC).isoformat(),
                    "provenance": provenance.to_dict(),
                    "files": manifest,
                }
                atomic_write_json(commit_file, record)
            atomic_write_text(branch_file, new_id + "\n")
        return self.resolve(repo, branch)

    def _write_object(self, digest: str, data: bytes) -> bool:
        """Store one blob through a temporary file and a rename; False if it was present."""
        target = self._object_path(digest)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".obj.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True

    # ---------------------------------------------------------------- reading
    def list_files(self, repo: str, ref: str) -> list[str]:
        return sorted(self._manifest(repo, ref))

    def read(self, repo: str, ref: str, path: str) -> bytes:
        return self.read_many(repo, ref, [path])[normalize_path(path)]

    def read_many(self, repo: str, ref: str, paths: list[str] | None = None) -> dict[str, bytes]:
        manifest = self._manifest(repo, ref)
        wanted = sorted(manifest) if paths is None else [normalize_path(p) for p in paths]
        contents: dict[str, bytes] = {}
        for path in wanted:
            entry = manifest.get(path)
            if entry is None:
                raise NotFoundError(f"{repo}@{ref}: no file {path!r}")
            contents[path] = self._object_path(entry[0]).read_bytes()
        return contents

    def checkout(self, repo: str, ref: str, dest: str | os.PathLike[str]) -> Commit:
        data, branch = self._resolve_raw(repo, ref)
        target = Path(dest)
        if target.exists() and any(target.iterdir()):
            raise DataError(f"cannot check out {repo}@{ref} into {target}: folder is not empty")
        target.mkdir(parents=True, exist_ok=True)
        made: set[Path] = set()
        for path, (digest, _size) in data["files"].items():
            out = target / path
            if out.parent not in made:
                out.parent.mkdir(parents=True, exist_ok=True)
                made.add(out.parent)
            shutil.copyfile(self._object_path(digest), out)
        commit = self._to_commit(data)
        return self._with_branch(commit, branch) if branch else commit

    def history(self, repo: str, ref: str) -> list[Commit]:
        commits = [self.resolve(repo, ref)]
        while commits[-1].parent:
            commits.append(self._to_commit(self._load_commit(repo, commits[-1].parent)))
        return commits
