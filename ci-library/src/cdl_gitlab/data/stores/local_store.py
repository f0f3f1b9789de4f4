"""The local profile's versioned store: content-addressed files under ``<state_dir>/data``.

Layout::

    objects/<aa>/<sha256>            file contents, content-addressed, immutable
    repos/<repo>/repo.json           description
    repos/<repo>/commits/<id>.json   parent, message, provenance, file count, size and the
                                     digest of the file list
    repos/<repo>/commits/<id>.sqlite the file list (manifest): path -> sha256, size
    repos/<repo>/branches/<branch>   the head commit id
    lock                             an exclusive file lock held by every writer

Commit id: the SHA-256 of the canonical JSON of (manifest, parent id, provenance). The same
tree put on the same parent with the same provenance always gets the same id, whatever the
time or message; putting a branch's current tree again is a no-op that returns the head.

Memory: ``put`` walks its source folder in path order and streams each file's row into the
manifest file (:mod:`~cdl_gitlab.data.stores.manifest`), hashing the commit id on the way;
reads stream the rows or look one path up. Nothing holds a list of every file, so a commit of
100,000 files costs the memory of one. (Commit files of the earlier layout, with the manifest
inline as ``"files"``, are still read.)

Atomicity: ``put`` writes the objects first (each through a temporary file and a rename, then
one ``sync()`` for all of them: an fsync per object costs ~8x more) and the manifest (a
temporary file, renamed to ``<id>.sqlite`` once the id is known), then the commit file, then
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
from collections.abc import Iterator, Mapping
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
from cdl_gitlab.data.stores.manifest import (
    ManifestWriter,
    Row,
    files_digest,
    iter_manifest,
    lookup,
)
from cdl_gitlab.fsutil import atomic_write_json, atomic_write_text, file_lock

Manifest = dict[str, list[Any]]  # path -> [sha256, size]


def commit_id(manifest: Manifest, parent: str | None, provenance: Provenance) -> str:
    """The content address of a commit held in memory (``put`` computes the same id while
    streaming, :meth:`ManifestWriter.commit_id`)."""
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
        files = data.get("files")
        return Commit(
            repo=data["repo"],
            id=data["id"],
            branch=data["branch"],
            parent=data["parent"],
            message=data["message"],
            created=data["created"],
            provenance=Provenance.from_dict(data["provenance"]),
            file_count=len(files) if files is not None else data["file_count"],
            size_bytes=(
                sum(size for _, size in files.values()) if files is not None else data["size_bytes"]
            ),
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

    def _rows(self, data: dict[str, Any]) -> Iterator[Row]:
        """The rows of a commit record's manifest, in path order."""
        files = data.get("files")
        if files is not None:  # the earlier layout: the manifest inline
            for path in sorted(files):
                yield path, files[path][0], files[path][1]
            return
        yield from iter_manifest(self._manifest_path(data))

    def _lookup(self, data: dict[str, Any], path: str) -> tuple[str, int] | None:
        files = data.get("files")
        if files is not None:
            entry = files.get(path)
            return (entry[0], entry[1]) if entry else None
        return lookup(self._manifest_path(data), path)

    def _manifest_path(self, data: dict[str, Any]) -> Path:
        return self._repo_dir(data["repo"]) / "commits" / data["manifest"]

    @staticmethod
    def _files_digest(data: dict[str, Any]) -> str:
        files = data.get("files")
        return files_digest(files) if files is not None else data["files_sha256"]

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
            parent = self._parent(folder, branch)
            manifest = ManifestWriter(folder / "commits")
            try:
                new_id = self._write_tree(repo, parent, items, manifest, provenance)
                if new_id is None:  # the branch's current tree and provenance: a no-op
                    manifest.discard()
                    return self.resolve(repo, branch)
                commit_file = folder / "commits" / f"{new_id}.json"
                if commit_file.is_file():
                    manifest.discard()
                else:
                    manifest.finish(folder / "commits" / f"{new_id}.sqlite")
                    record = {
                        "id": new_id,
                        "repo": repo,
                        "branch": branch,
                        "parent": parent,
                        "message": message,
                        "created": dt.datetime.now(dt.UTC).isoformat(),
                        "provenance": provenance.to_dict(),
                        "manifest": f"{new_id}.sqlite",
                        "file_count": manifest.count,
                        "size_bytes": manifest.size_bytes,
                        "files_sha256": manifest.files_digest(),
                    }
                    atomic_write_json(commit_file, record)
            except BaseException:
                manifest.discard()
                raise
            atomic_write_text(folder / "branches" / branch, new_id + "\n")
        return self.resolve(repo, branch)

    @staticmethod
    def _parent(folder: Path, branch: str) -> str | None:
        branch_file = folder / "branches" / branch
        if not branch_file.is_file():
            return None
        return branch_file.read_text("utf-8").strip() or None

    def _write_tree(
        self,
        repo: str,
        parent: str | None,
        items: Iterator[tuple[str, Path | bytes]],
        manifest: ManifestWriter,
        provenance: Provenance,
    ) -> str | None:
        """Store each file's object and manifest row; the new commit's id, or None when the
        tree and provenance are the branch head's."""
        written = False
        for path, content in items:
            data = content if isinstance(content, bytes) else content.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            written = self._write_object(digest, data) or written
            manifest.add(path, digest, len(data))
        manifest.close()
        if written:
            os.sync()  # every new object is durable before a commit refers to it
        if parent:
            head = self._load_commit(repo, parent)
            same_files = self._files_digest(head) == manifest.files_digest()
            if same_files and head["provenance"] == provenance.to_dict():
                return None
        return manifest.commit_id(parent, provenance.to_dict())

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
        return [path for path, _, _ in self._rows(self._resolve_raw(repo, ref)[0])]

    def read(self, repo: str, ref: str, path: str) -> bytes:
        return self.read_many(repo, ref, [path])[normalize_path(path)]

    def read_many(self, repo: str, ref: str, paths: list[str] | None = None) -> dict[str, bytes]:
        data = self._resolve_raw(repo, ref)[0]
        if paths is None:
            rows = self._rows(data)
            return {path: self._object_path(digest).read_bytes() for path, digest, _ in rows}
        contents: dict[str, bytes] = {}
        for path in (normalize_path(p) for p in paths):
            entry = self._lookup(data, path)
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
        for path, digest, _size in self._rows(data):
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
