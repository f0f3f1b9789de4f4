"""An in-process gRPC server that speaks the few PFS/PPS methods the data store uses.

It is a real ``grpc.server`` on 127.0.0.1 serving the wire format of pachyderm-sdk's
betterproto messages, so the SDK's real ``Client`` and stubs are exercised end to end; only
Pachyderm's storage is replaced by dictionaries. Pachyderm semantics it keeps: a new commit
starts from its parent's files and becomes the branch head at once (open); ``DropCommitSet``
removes it and restores the head. A created pipeline gets its output repo; a commit to one of
its input repos opens an output commit with the same id (the commit set), which stays open
until the test says the pipeline's job ran (``run_job``, optionally failing it).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import betterproto
import betterproto.lib.google.protobuf as wkt
import grpc
from pachyderm_sdk.api import pfs, pps


@dataclass
class FakeCommit:
    id: str
    branch: str
    parent: str | None
    description: str
    files: dict[str, bytes]
    finished: bool = False
    error: str = ""
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass
class FakeRepo:
    description: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, FakeCommit] = field(default_factory=dict)


class FakePachd:
    """State + handlers; ``address`` is ``grpc://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.pipelines: list[str] = []
        self.pipeline_inputs: dict[str, set[str]] = {}
        self.fail_on_path: str | None = None
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("pfs_v2.API", self._pfs_handlers()),
                grpc.method_handlers_generic_handler("pps_v2.API", self._pps_handlers()),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"grpc://127.0.0.1:{self.port}"

    def start(self) -> FakePachd:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    # ---------------------------------------------------------------- plumbing
    def _pfs_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        unary = grpc.unary_unary_rpc_method_handler
        stream = grpc.unary_stream_rpc_method_handler
        return {
            "CreateRepo": unary(self.create_repo, pfs.CreateRepoRequest.FromString, bytes),
            "ListRepo": stream(self.list_repo, pfs.ListRepoRequest.FromString, bytes),
            "ListBranch": stream(self.list_branch, pfs.ListBranchRequest.FromString, bytes),
            "CreateBranch": unary(self.create_branch, pfs.CreateBranchRequest.FromString, bytes),
            "StartCommit": unary(self.start_commit, pfs.StartCommitRequest.FromString, bytes),
            "FinishCommit": unary(self.finish_commit, pfs.FinishCommitRequest.FromString, bytes),
            "InspectCommit": unary(self.inspect_commit, pfs.InspectCommitRequest.FromString, bytes),
            "DropCommitSet": unary(
                self.drop_commit_set, pfs.DropCommitSetRequest.FromString, bytes
            ),
            "ModifyFile": grpc.stream_unary_rpc_method_handler(
                self.modify_file, pfs.ModifyFileRequest.FromString, bytes
            ),
            "WalkFile": stream(self.walk_file, pfs.WalkFileRequest.FromString, bytes),
            "GetFile": stream(self.get_file, pfs.GetFileRequest.FromString, bytes),
        }

    def _pps_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "CreatePipelineV2": grpc.unary_unary_rpc_method_handler(
                self.create_pipeline_v2, pps.CreatePipelineV2Request.FromString, bytes
            )
        }

    def _repo(self, repo: pfs.Repo, context: grpc.ServicerContext) -> FakeRepo:
        if repo.name not in self.repos:
            context.abort(grpc.StatusCode.NOT_FOUND, f"repo {repo.name} not found")
        return self.repos[repo.name]

    def _commit(self, commit: pfs.Commit, context: grpc.ServicerContext) -> FakeCommit:
        repo_msg = commit.repo if commit.repo.name else commit.branch.repo
        repo = self._repo(repo_msg, context)
        commit_id = commit.id or repo.branches.get(commit.branch.name, "")
        if commit_id not in repo.commits:
            context.abort(grpc.StatusCode.NOT_FOUND, f"commit {commit_id or commit} not found")
        return repo.commits[commit_id]

    @staticmethod
    def _commit_msg(repo: str, commit: FakeCommit) -> pfs.Commit:
        repo_msg = pfs.Repo(name=repo, type="user", project=pfs.Project(name="default"))
        return pfs.Commit(
            repo=repo_msg, id=commit.id, branch=pfs.Branch(repo=repo_msg, name=commit.branch)
        )

    # ---------------------------------------------------------------- PFS
    def create_repo(self, request: pfs.CreateRepoRequest, context: Any) -> wkt.Empty:
        with self.lock:
            if request.repo.name in self.repos and not request.update:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "repo exists")
            self.repos.setdefault(request.repo.name, FakeRepo(request.description))
        return wkt.Empty()

    def list_repo(self, request: pfs.ListRepoRequest, context: Any) -> Iterator[pfs.RepoInfo]:
        for name, repo in sorted(self.repos.items()):
            yield pfs.RepoInfo(
                repo=pfs.Repo(name=name, type="user", project=pfs.Project(name="default")),
                description=repo.description,
            )

    def list_branch(self, request: pfs.ListBranchRequest, context: Any) -> Iterator[Any]:
        repo = self._repo(request.repo, context)
        for name, head in sorted(repo.branches.items()):
            yield pfs.BranchInfo(
                branch=pfs.Branch(repo=request.repo, name=name),
                head=pfs.Commit(repo=request.repo, id=head),
            )

    def create_branch(self, request: pfs.CreateBranchRequest, context: Any) -> wkt.Empty:
        repo = self._repo(request.branch.repo, context)
        commit = self._commit(request.head, context)
        repo.branches[request.branch.name] = commit.id
        return wkt.Empty()

    def start_commit(self, request: pfs.StartCommitRequest, context: Any) -> pfs.Commit:
        with self.lock:
            repo = self._repo(request.branch.repo, context)
            parent = repo.branches.get(request.branch.name)
            files = dict(repo.commits[parent].files) if parent else {}
            commit = FakeCommit(
                uuid.uuid4().hex, request.branch.name, parent, request.description, files
            )
            repo.commits[commit.id] = commit
            repo.branches[commit.branch] = commit.id
            for name, inputs in self.pipeline_inputs.items():
                if request.branch.repo.name in inputs:
                    self._open_output(name, commit.id)
        return self._commit_msg(request.branch.repo.name, commit)

    def _open_output(self, pipeline: str, commit_id: str) -> None:
        """The output commit of ``pipeline`` in commit set ``commit_id`` (open: no job ran)."""
        out = self.repos[pipeline]
        parent = out.branches.get("master")
        files = dict(out.commits[parent].files) if parent else {}
        out.commits[commit_id] = FakeCommit(commit_id, "master", parent, "", files)
        out.branches["master"] = commit_id

    def run_job(
        self, pipeline: str, error: str = "", files: dict[str, bytes] | None = None
    ) -> list[str]:
        """The pipeline's job ran: finish its open output commits (with ``error`` if it
        failed, else with ``files`` as their tree when given); returns their ids."""
        with self.lock:
            ran = [c for c in self.repos[pipeline].commits.values() if not c.finished]
            for commit in ran:
                commit.finished, commit.error = True, error
                if files is not None and not error:
                    commit.files = {"/" + path.lstrip("/"): data for path, data in files.items()}
        return [commit.id for commit in ran]

    def finish_commit(self, request: pfs.FinishCommitRequest, context: Any) -> wkt.Empty:
        self._commit(request.commit, context).finished = True
        return wkt.Empty()

    def inspect_commit(self, request: pfs.InspectCommitRequest, context: Any) -> Any:
        commit = self._commit(request.commit, context)
        repo = request.commit.repo.name or request.commit.branch.repo.name
        info = pfs.CommitInfo(
            commit=self._commit_msg(repo, commit),
            description=commit.description,
            started=commit.started,
            size_bytes_upper_bound=sum(map(len, commit.files.values())),
        )
        if commit.finished:
            info.finished = commit.started
            info.error = commit.error
        if commit.parent:
            info.parent_commit = pfs.Commit(repo=info.commit.repo, id=commit.parent)
        return info

    def drop_commit_set(self, request: pfs.DropCommitSetRequest, context: Any) -> wkt.Empty:
        with self.lock:
            for repo in self.repos.values():
                commit = repo.commits.pop(request.commit_set.id, None)
                if commit is not None and repo.branches.get(commit.branch) == commit.id:
                    if commit.parent:
                        repo.branches[commit.branch] = commit.parent
                    else:
                        del repo.branches[commit.branch]
        return wkt.Empty()

    def modify_file(self, requests: Iterator[pfs.ModifyFileRequest], context: Any) -> wkt.Empty:
        commit: FakeCommit | None = None
        for request in requests:
            kind, body = betterproto.which_one_of(request, "body")
            if kind == "set_commit":
                commit = self._commit(body, context)
                if commit.finished:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "commit finished")
                continue
            if commit is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "set_commit first")
            if kind == "delete_file":
                prefix = body.path.rstrip("/") + "/"
                for path in [p for p in commit.files if p == body.path or p.startswith(prefix)]:
                    del commit.files[path]
            elif kind == "add_file":
                if self.fail_on_path and body.path.endswith(self.fail_on_path):
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "storage full (fake)")
                commit.files[body.path] = commit.files.get(body.path, b"") + (body.raw or b"")
        return wkt.Empty()

    def walk_file(self, request: pfs.WalkFileRequest, context: Any) -> Iterator[pfs.FileInfo]:
        commit = self._commit(request.file.commit, context)
        dirs = {
            "/".join(p.split("/")[:i]) + "/" for p in commit.files for i in range(1, p.count("/"))
        }
        for path in sorted(dirs | set(commit.files)):
            kind = pfs.FileType.DIR if path.endswith("/") else pfs.FileType.FILE
            yield pfs.FileInfo(
                file=pfs.File(commit=request.file.commit, path=path),
                file_type=kind,
                size_bytes=len(commit.files.get(path, b"")),
            )

    def get_file(self, request: pfs.GetFileRequest, context: Any) -> Iterator[Any]:
        commit = self._commit(request.file.commit, context)
        data = commit.files.get(request.file.path)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"file {request.file.path} not found")
        for start in range(0, max(len(data), 1), 3):  # tiny chunks: exercises reassembly
            yield wkt.BytesValue(value=data[start : start + 3])

    # ---------------------------------------------------------------- PPS
    def create_pipeline_v2(self, request: pps.CreatePipelineV2Request, context: Any) -> Any:
        self.pipelines.append(request.create_pipeline_request_json)
        spec = json.loads(request.create_pipeline_request_json)
        name = spec["pipeline"]["name"]
        with self.lock:
            self.pipeline_inputs[name] = set(_input_repos(spec.get("input") or {}))
            self.repos.setdefault(name, FakeRepo(spec.get("description", "")))
        return pps.CreatePipelineV2Response(
            effective_create_pipeline_request_json=request.create_pipeline_request_json
        )


def _input_repos(node: Any) -> Iterator[str]:
    """The repos of a pipeline spec's ``input`` (pfs leaves of cross/union/join/group)."""
    if isinstance(node, list):
        for item in node:
            yield from _input_repos(item)
    elif isinstance(node, dict):
        if "pfs" in node:
            yield node["pfs"]["repo"]
        for key in ("cross", "union", "join", "group"):
            yield from _input_repos(node.get(key) or [])
