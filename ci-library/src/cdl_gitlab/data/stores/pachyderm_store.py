"""The cluster profile's store: Pachyderm repos through pachyderm-sdk.

Differences from the local store: commit ids are Pachyderm's; the message, provenance and
file count travel as JSON in the commit description; putting an unchanged tree still makes a
new commit. A ``put`` writes the whole tree in one ``ModifyFile`` stream (delete ``/``, then
every file) into an open commit; on any error the open commit is dropped, so no partial commit
is ever finished and the branch head stays where it was.

A run killed mid-``put`` (a cancelled or timed-out CI job) cannot drop its commit: the branch
head stays open, and pachd refuses any new commit on it ("parent commit ... has not been
finished"). The next ``put`` on that branch therefore drops such a head (``DropCommitSet``,
which also drops the pipelines' open output commits of that commit set) and logs why. It is
never finished: its files may be partial, and a finished commit would become the input of the
validate pipelines and then of training. Only an open head that a ``put`` started (its
description is this store's JSON) is dropped; any other open head is an error naming it.
The data jobs run one at a time (the component's ``resource_group``), so an open head found
at the start of a ``put`` belongs to a run that died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from cdl_gitlab.data.commits import Commit, Provenance
from cdl_gitlab.data.errors import DataError, NotFoundError
from cdl_gitlab.data.stores.base import (
    DataStore,
    check_branch_name,
    check_repo_name,
    iter_source,
    normalize_path,
)

if TYPE_CHECKING:
    from pachyderm_sdk import Client

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024
_META_KEYS = {"message", "provenance", "files"}


class PachydermStore(DataStore):
    """A ``DataStore`` on a Pachyderm cluster (project ``project``)."""

    def __init__(self, client: Client, project: str = "default") -> None:
        from pachyderm_sdk.api import pfs

        self.client = client
        self.pfs = pfs
        self.project = pfs.Project(name=project)

    @classmethod
    def from_address(cls, address: str, project: str = "default") -> PachydermStore:
        from pachyderm_sdk import Client

        if not address:
            raise DataError(
                "the cluster profile needs Pachyderm's address: set "
                "cluster.pachyderm_address in cdl.yaml or PACHD_ADDRESS"
            )
        return cls(Client.from_pachd_address(address), project)

    # ---------------------------------------------------------------- helpers
    def repo_message(self, name: str) -> Any:
        """The SDK's ``pfs.Repo`` of repo ``name`` in this store's project."""
        return self.pfs.Repo(name=check_repo_name(name), type="user", project=self.project)

    _repo = repo_message

    def _call(self, what: str, func: Any, **kwargs: Any) -> Any:
        try:
            return func(**kwargs)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(f"{what}: not found ({details})") from exc
            raise DataError(f"{what}: Pachyderm error {code}: {details}") from exc

    def _commit_ref(self, repo: str, ref: str) -> Any:
        branches = self.list_branches(repo)
        if ref in branches:
            return self.pfs.Commit(
                repo=self._repo(repo), branch=self.pfs.Branch(repo=self._repo(repo), name=ref)
            )
        return self.pfs.Commit(repo=self._repo(repo), id=ref)

    def _to_commit(self, repo: str, info: Any, branch: str | None = None) -> Commit:
        try:
            meta = json.loads(info.description) if info.description else {}
        except json.JSONDecodeError:
            meta = {"message": info.description}
        if not isinstance(meta, dict):
            meta = {"message": info.description}
        parent = info.parent_commit.id if info.parent_commit and info.parent_commit.id else None
        started = info.started.isoformat() if info.started else ""
        return Commit(
            repo=repo,
            id=info.commit.id,
            branch=branch or (info.commit.branch.name if info.commit.branch else ""),
            parent=parent,
            message=str(meta.get("message", "")),
            created=started,
            provenance=Provenance.from_dict(meta.get("provenance")),
            file_count=int(meta.get("files", 0)),
            size_bytes=int(info.size_bytes_upper_bound or 0),
        )

    # ---------------------------------------------------------------- repos and branches
    def create_repo(self, repo: str, description: str = "") -> None:
        if repo in self.list_repos():
            return
        self._call(
            f"create repo {repo}",
            self.client.pfs.create_repo,
            repo=self._repo(repo),
            description=description,
        )

    def list_repos(self) -> list[str]:
        infos = self._call(
            "list repos",
            lambda **kw: list(self.client.pfs.list_repo(**kw)),
            projects=[self.project],
        )
        return sorted(info.repo.name for info in infos if info.repo.type in ("", "user"))

    def list_branches(self, repo: str) -> dict[str, str]:
        infos = self._call(
            f"list branches of {repo}",
            lambda **kw: list(self.client.pfs.list_branch(**kw)),
            repo=self._repo(repo),
        )
        return {info.branch.name: (info.head.id if info.head else "") for info in infos}

    def create_branch(self, repo: str, branch: str, from_ref: str) -> Commit:
        check_branch_name(branch)
        commit = self.resolve(repo, from_ref)
        self._call(
            f"create branch {repo}@{branch}",
            self.client.pfs.create_branch,
            branch=self.pfs.Branch(repo=self._repo(repo), name=branch),
            head=self.pfs.Commit(repo=self._repo(repo), id=commit.id),
        )
        return Commit(**{**commit.__dict__, "branch": branch})

    def create_pipeline(self, name: str, spec_json: str) -> None:
        """Create or update pipeline ``name`` from its JSON spec (``CreatePipelineV2``)."""
        self._call(
            f"create pipeline {name}",
            self.client.pps.create_pipeline_v2,
            create_pipeline_request_json=spec_json,
            update=True,
        )

    # ---------------------------------------------------------------- writing
    def drop_open_head(self, repo: str, branch: str) -> str | None:
        """Drop the head of ``repo@branch`` if a ``put`` left it open; returns its id.

        See the module docstring: an open head holds possibly partial files, so it is
        dropped, never finished; an open head not started by a ``put`` is an error."""
        head = self.list_branches(repo).get(branch)
        if not head:
            return None
        info = self._call(
            f"{repo}@{head}",
            self.client.pfs.inspect_commit,
            commit=self.pfs.Commit(repo=self._repo(repo), id=head),
        )
        if _is_set(info.finishing) or _is_set(info.finished):
            return None
        try:
            meta = json.loads(info.description or "")
        except json.JSONDecodeError:
            meta = None
        if not (isinstance(meta, dict) and meta.keys() >= _META_KEYS):
            raise DataError(
                f"{repo}@{branch}: the head commit {head} is open and was not started by cdl; "
                f"finish it (`pachctl finish commit {repo}@{head}`) if its files are complete, "
                f"or drop it (`pachctl delete commit {head}`), then run again"
            )
        started = info.started.isoformat() if _is_set(info.started) else "at an unknown time"
        log.warning(
            "%s@%s: dropping the open commit %s (%r, started %s): a run that did not finish "
            "left it; its files may be partial, so it is dropped, never finished, and no "
            "pipeline or training reads it",
            repo,
            branch,
            head,
            meta.get("message", ""),
            started,
        )
        self._call(
            f"drop open commit {repo}@{head}",
            self.client.pfs.drop_commit_set,
            commit_set=self.pfs.CommitSet(id=head),
        )
        return head

    def put(
        self,
        repo: str,
        branch: str,
        source: str | os.PathLike[str] | Mapping[str, bytes],
        message: str = "",
        provenance: Provenance | None = None,
    ) -> Commit:
        check_branch_name(branch)
        items = list(iter_source(source))
        meta = {
            "message": message,
            "provenance": (provenance or Provenance()).to_dict(),
            "files": len(items),
        }
        if repo in self.list_repos():
            self.drop_open_head(repo, branch)
        open_commit = self._call(
            f"start commit on {repo}@{branch}",
            self.client.pfs.start_commit,
            branch=self.pfs.Branch(repo=self._repo(repo), name=branch),
            description=json.dumps(meta, sort_keys=True),
        )
        try:
            self.client.pfs.modify_file(self._operations(open_commit, items))
            self.client.pfs.finish_commit(commit=open_commit)
            info = self.client.pfs.inspect_commit(
                commit=open_commit, wait=self.pfs.CommitState.FINISHED
            )
        except BaseException as exc:
            with contextlib.suppress(grpc.RpcError):
                self.client.pfs.drop_commit_set(commit_set=self.pfs.CommitSet(id=open_commit.id))
            if isinstance(exc, grpc.RpcError):
                raise DataError(f"put {repo}@{branch}: Pachyderm error: {exc}") from exc
            raise
        return self._to_commit(repo, info, branch)

    def _operations(self, commit: Any, items: list[tuple[str, Path | bytes]]) -> Iterator[Any]:
        pfs = self.pfs
        yield pfs.ModifyFileRequest(set_commit=commit)
        yield pfs.ModifyFileRequest(delete_file=pfs.DeleteFile(path="/"))
        for path, content in items:
            target = "/" + path
            if isinstance(content, bytes):
                yield pfs.ModifyFileRequest(add_file=pfs.AddFile(path=target, raw=content))
                continue
            with open(content, "rb") as handle:
                yield pfs.ModifyFileRequest(add_file=pfs.AddFile(path=target, raw=b""))
                while chunk := handle.read(_CHUNK):
                    yield pfs.ModifyFileRequest(add_file=pfs.AddFile(path=target, raw=chunk))

    # ---------------------------------------------------------------- reading
    def resolve(self, repo: str, ref: str) -> Commit:
        commit = self._commit_ref(repo, ref)
        info = self._call(f"{repo}@{ref}", self.client.pfs.inspect_commit, commit=commit)
        branch = ref if commit.branch and commit.branch.name == ref else None
        return self._to_commit(repo, info, branch)

    def list_files(self, repo: str, ref: str) -> list[str]:
        commit = self._commit_ref(repo, ref)
        infos = self._call(
            f"list files of {repo}@{ref}",
            lambda **kw: list(self.client.pfs.walk_file(**kw)),
            file=self.pfs.File(commit=commit, path="/"),
        )
        return sorted(
            info.file.path.lstrip("/") for info in infos if info.file_type == self.pfs.FileType.FILE
        )

    def read(self, repo: str, ref: str, path: str) -> bytes:
        commit = self._commit_ref(repo, ref)
        target = "/" + normalize_path(path)
        chunks = self._call(
            f"{repo}@{ref}:{target}",
            lambda **kw: [c.value for c in self.client.pfs.get_file(**kw)],
            file=self.pfs.File(commit=commit, path=target),
        )
        return b"".join(chunks)

    def checkout(self, repo: str, ref: str, dest: str | os.PathLike[str]) -> Commit:
        commit = self.resolve(repo, ref)
        target = Path(dest)
        if target.exists() and any(target.iterdir()):
            raise DataError(f"cannot check out {repo}@{ref} into {target}: folder is not empty")
        for path in self.list_files(repo, commit.id):
            out = target / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(self.read(repo, commit.id, path))
        target.mkdir(parents=True, exist_ok=True)
        return commit

    def history(self, repo: str, ref: str) -> list[Commit]:
        commits = [self.resolve(repo, ref)]
        while commits[-1].parent:
            commits.append(self.resolve(repo, commits[-1].parent))
        return commits


def _is_set(timestamp: Any) -> bool:
    """Whether a ``Timestamp`` field is set (betterproto decodes an unset one as the epoch)."""
    return timestamp is not None and timestamp.timestamp() > 0
