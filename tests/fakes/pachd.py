"""An in-process gRPC server that speaks the few PFS/PPS methods the data store uses.

It is a real ``grpc.server`` on 127.0.0.1 serving the wire format of pachyderm-sdk's
betterproto messages, so the SDK's real ``Client`` and stubs are exercised end to end; only
Pachyderm's storage is replaced by dictionaries. Pachyderm semantics it keeps: a new commit
starts from its parent's files and becomes the branch head at once (open); ``DropCommitSet``
removes it and restores the head. A created pipeline gets its output repo; a commit to one of
its input repos opens an output commit with the same id (the commit set) in it and in every
pipeline downstream, which stays open until the test says the pipeline's job ran
(``run_job``, optionally failing it).

It refuses what pachd 2.12 refuses (read from its published source, ``src/server/pfs/server``
and ``src/server/pps/server``), with the same gRPC codes and messages:

- ``CreatePipelineV2``: a spec the server's JSON parser rejects (unknown field, wrong type),
  no ``pipeline.name``, no ``transform``, an input without repo or glob, two inputs with one
  name, a ``transform.secrets`` entry whose Kubernetes secret or key does not exist (when the
  test declares ``kube_secrets``), an input repo that does not exist
  ("repo default/<repo> not found"), an existing
  pipeline without ``update``, a new pipeline named like an existing repo. An empty
  ``transform.image`` is not refused: pachd puts its default image ``ubuntu:20.04`` into the
  effective spec (``effective``), where the step's imports would fail.
- ``CreateRepo`` of an existing repo without ``update``.
- ``StartCommit`` on a missing repo, on a pipeline's output branch, or on a branch whose head
  is open ("parent commit <repo>@<id> has not been finished").
- ``FinishCommit`` of a finished commit or of a pipeline's output commit.
- ``DropCommitSet`` of an unknown commit set or of commits that have children.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import typing
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
    output_of: str = ""  # the pipeline whose output repo this is
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, FakeCommit] = field(default_factory=dict)


class FakePachd:
    """State + handlers; ``address`` is ``grpc://127.0.0.1:<port>``."""

    def __init__(self, kube_secrets: dict[str, dict[str, str]] | None = None) -> None:
        # the Kubernetes secrets of pachd's namespace (name -> key -> value); None: unchecked
        self.kube_secrets = kube_secrets
        self.repos: dict[str, FakeRepo] = {}
        self.pipelines: list[str] = []  # every accepted CreatePipelineV2 JSON, in order
        self.effective: dict[str, dict[str, Any]] = {}  # pipeline -> its effective spec
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
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"repo {_repo_str(request.repo)} already exists"
                )
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
            name = request.branch.repo.name
            repo = self._repo(request.branch.repo, context)
            where = f"{_repo_str(request.branch.repo)}@{request.branch.name}"
            if repo.output_of:
                context.abort(
                    grpc.StatusCode.UNKNOWN, f"cannot start a commit on an output branch: {where}"
                )
            parent = repo.branches.get(request.branch.name)
            if parent and not repo.commits[parent].finished:
                context.abort(
                    grpc.StatusCode.UNKNOWN,
                    f"create commit: parent commit {_repo_str(request.branch.repo)}@{parent} "
                    "has not been finished",
                )
            files = dict(repo.commits[parent].files) if parent else {}
            commit = FakeCommit(
                uuid.uuid4().hex, request.branch.name, parent, request.description, files
            )
            repo.commits[commit.id] = commit
            repo.branches[commit.branch] = commit.id
            self._propagate(name, commit.id)
        return self._commit_msg(name, commit)

    def _propagate(self, repo: str, commit_id: str) -> None:
        """Open the output commits of commit set ``commit_id`` downstream of ``repo``."""
        for pipeline, inputs in self.pipeline_inputs.items():
            if repo in inputs and commit_id not in self.repos[pipeline].commits:
                self._open_output(pipeline, commit_id)
                self._propagate(pipeline, commit_id)

    def _open_output(self, pipeline: str, commit_id: str) -> None:
        """The output commit of ``pipeline`` in commit set ``commit_id`` (open: no job ran).
        Like pachd's propagation it does not need a finished parent."""
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
        with self.lock:
            commit = self._commit(request.commit, context)
            repo_msg = request.commit.repo
            if not repo_msg.name:
                repo_msg = request.commit.branch.repo
            if commit.finished:
                context.abort(
                    grpc.StatusCode.UNKNOWN,
                    f"commit {_repo_str(repo_msg)}@{commit.id} has already finished",
                )
            if self.repos[repo_msg.name].output_of and not request.force:
                context.abort(
                    grpc.StatusCode.UNKNOWN,
                    "cannot finish a pipeline output or meta commit, use 'stop job' instead",
                )
            commit.finished = True
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
            info.finishing = info.finished = commit.started
            info.error = commit.error
        if commit.parent:
            info.parent_commit = pfs.Commit(repo=info.commit.repo, id=commit.parent)
        return info

    def drop_commit_set(self, request: pfs.DropCommitSetRequest, context: Any) -> wkt.Empty:
        with self.lock:
            set_id = request.commit_set.id
            members = {n: r for n, r in self.repos.items() if set_id in r.commits}
            if not members:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no commits found for commitset {set_id}")
            for name, repo in members.items():
                if any(c.parent == set_id for c in repo.commits.values()):
                    context.abort(
                        grpc.StatusCode.UNKNOWN,
                        f"cannot drop a commit that has children: default/{name}@{set_id}",
                    )
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
        text = request.create_pipeline_request_json
        try:
            spec = json.loads(text)
            problems = _parse_problems(pps.CreatePipelineRequest, spec, "")
        except json.JSONDecodeError as exc:
            spec, problems = None, [f"syntax error: {exc}"]
        if problems or not isinstance(spec, dict):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"could not make effective spec: could not parse {text} as Create Pipeline "
                f"Request message: {'; '.join(problems) or 'not an object'}",
            )
        name = (spec.get("pipeline") or {}).get("name") or ""
        if not name:
            context.abort(
                grpc.StatusCode.UNKNOWN,
                "invalid pipeline spec: request.Pipeline.Name cannot be empty",
            )
        transform = spec.get("transform")
        if transform is None:
            context.abort(grpc.StatusCode.UNKNOWN, "pipeline must specify a transform")
        for secret in transform.get("secrets") or []:
            problem = self._secret_problem(secret)
            if problem:
                context.abort(grpc.StatusCode.UNKNOWN, problem)
        effective = json.loads(text)
        if not transform.get("image"):
            effective["transform"]["image"] = DEFAULT_USER_IMAGE
        problem = _input_problem(effective.get("input"), set())
        if problem:
            context.abort(grpc.StatusCode.UNKNOWN, problem)
        with self.lock:
            if name in self.pipeline_inputs and not request.update:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f'pipeline "{name}" already exists')
            inputs = set(_input_repos(effective.get("input") or {}))
            for repo in sorted(inputs):
                if repo not in self.repos:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"repo default/{repo} not found")
            if name not in self.pipeline_inputs and name in self.repos:
                context.abort(
                    grpc.StatusCode.UNKNOWN,
                    f'pipeline "{name}" cannot be created because a repo with the same name '
                    "already exists",
                )
            self.pipelines.append(text)
            self.effective[name] = effective
            self.pipeline_inputs[name] = inputs
            self.repos.setdefault(
                name, FakeRepo(f"Output repo for pipeline default/{name}.", output_of=name)
            )
        return pps.CreatePipelineV2Response(
            effective_create_pipeline_request_json=json.dumps(effective)
        )

    def _secret_problem(self, secret: dict[str, Any]) -> str:
        """pachd's validateSecret: an env_var needs a key; the secret and key must exist."""
        name, key = secret.get("name", ""), secret.get("key", "")
        if secret.get("env_var") and not key:
            return f"secret {name} has env_var set but is missing key"
        if self.kube_secrets is None:
            return ""
        if name not in self.kube_secrets:
            return f"missing Kubernetes secret {name}"
        if secret.get("env_var") and key not in self.kube_secrets[name]:
            return f"Kubernetes secret {name} missing key {key}"
        return ""


DEFAULT_USER_IMAGE = "ubuntu:20.04"  # pachd's DefaultUserImage for an empty transform.image


def _repo_str(repo: pfs.Repo) -> str:
    """pachd's rendering of a user repo: ``<project>/<name>``."""
    return f"{repo.project.name or 'default'}/{repo.name}"


def _json_keys(message_cls: type) -> dict[str, dataclasses.Field]:
    """The JSON keys protojson accepts for a betterproto message: proto and camelCase names."""
    keys: dict[str, dataclasses.Field] = {}
    for item in dataclasses.fields(message_cls):
        if "betterproto" not in item.metadata:
            continue
        proto = item.name.rstrip("_")
        head, *rest = proto.split("_")
        keys[proto] = keys[head + "".join(part.capitalize() for part in rest)] = item
    return keys


_SCALARS = {"string": str, "bool": bool, "map": dict}


def _parse_problems(message_cls: type, value: Any, path: str) -> list[str]:
    """What protojson would refuse in ``value`` as a ``message_cls``: unknown fields, an
    object where a scalar belongs (and the reverse), a non-list for a repeated field."""
    if not isinstance(value, dict):
        return [f"{path or '(top)'}: expected an object"]
    hints = typing.get_type_hints(message_cls)
    keys = _json_keys(message_cls)
    problems: list[str] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        field_ = keys.get(key)
        if field_ is None:
            problems.append(f'unknown field "{key}" ({where})')
            continue
        if item is None:
            continue
        meta = field_.metadata["betterproto"]
        hint = hints[field_.name]
        items = [item]
        if typing.get_origin(hint) in (list, typing.List):  # noqa: UP006
            if not isinstance(item, list):
                problems.append(f"{where}: expected a list")
                continue
            (hint,) = typing.get_args(hint)
            items = item
        for element in items:
            if meta.proto_type == "message" and dataclasses.is_dataclass(hint) and not meta.wraps:
                problems.extend(_parse_problems(hint, element, where))
            elif meta.proto_type in _SCALARS and not isinstance(element, _SCALARS[meta.proto_type]):
                problems.append(f"{where}: expected a {meta.proto_type}")
    return problems


def _input_problem(node: Any, names: set[str]) -> str:
    """pachd's validateInput/ValidateNames after its defaults (branch master, name = repo)."""
    if not isinstance(node, dict):
        return ""
    kinds = [k for k in ("pfs", "cross", "union", "join", "group", "cron") if node.get(k)]
    if not kinds:
        return "no input set"
    if len(kinds) > 1:
        return "multiple input types set"
    if "pfs" in node:
        pfs_ = node["pfs"]
        if not pfs_.get("repo"):
            return "input must specify a repo"
        if not pfs_.get("glob") and not pfs_.get("s3"):
            return "input must specify a glob"
        name = pfs_.get("name") or pfs_["repo"]
        if name in names:
            return f'name "{name}" was used more than once'
        names.add(name)
        return ""
    for kind in ("cross", "union", "join", "group"):
        for child in node.get(kind) or []:
            problem = _input_problem(child, names if kind != "union" else set(names))
            if problem:
                return problem
    return ""


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
