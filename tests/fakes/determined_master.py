"""A real HTTP fake of the Determined 0.38 master's REST API, for tests that drive the SDK.

It listens on 127.0.0.1 (free port) in a background thread, records every request and serves
what the determined SDK calls for login, the model registry, checkpoint download and
experiment submission/polling, with in-memory state. JSON shapes follow the SDK's generated
bindings (``determined/common/api/bindings.py``), so the SDK parses the answers for real.

    with FakeDeterminedMaster(password="S3cret-pass") as master:
        master.add_checkpoint("ck-1", {"state_dict.pth": b"..."})
        DeterminedRegistry(master.url).register_version("news", Checkpoint("ck-1"))
        assert master.calls("POST")[-1] == ("POST", "/api/v1/models/news/versions")

Experiments advance one step of ``experiment_states`` each time they are fetched
(default: ACTIVE, ACTIVE, COMPLETED); each has one trial whose batches grow with it.

What the real master refuses, the fake refuses: a model context over the SDK's
``MAX_CONTEXT_SIZE`` (``context_limit``), ``image``/``command``/probes... in the
``determined-container`` of ``environment.pod_spec`` (its ``env`` is merged into the trial's
container: ``secretKeyRef`` entries are resolved from ``kube_secrets``). Checkpoints without
validation metrics are kept and sorted last (as the master's ``ORDER BY ... NULLS LAST``).

Each experiment's trial RUNS, in a background thread of the fake, as a Kubernetes trial pod
of the 0.38 master runs it: a clean subprocess with only the config's
``environment.environment_variables``, the determined-container's resolved ``env`` and the
``DET_*`` variables the master sets (cluster, task, allocation, trial, hyperparameters, the full
experiment config, a task session token, ``DET_RESOURCES_TYPE=k8s-job``). The subprocess runs
the master's container entrypoint steps with the SDK, unmodified:
``python3 -m determined.exec.prep_container --download_context_directory --resources --proxy``
(writes the info files, fetches the uploaded context from this fake into the working dir),
``... prep_container --rendezvous`` and ``python3 -m determined.exec.launch`` (runs the
config's ``entrypoint``). Because the SDK reads its info files from the fixed path
``/run/determined/info`` (and links ``/tmp/tensorboard``), the subprocess gets its own mount
namespace (``unshare --mount --map-root-user``; needs unprivileged user namespaces or root)
with a tmpfs over ``/run`` and ``/tmp``: the working dir is ``/run/determined/workdir`` there,
and nothing is written to the host's ``/run`` or ``/tmp``. Checkpoint storage is the config's
``checkpoint_storage``, or else (the cluster default) a ``directory`` storage in a folder of
the fake, OUTSIDE the working dir; a ``directory`` storage is mounted into the pod at its
``container_path`` (as the master mounts it as a volume; other storage types are not
modelled). The trial talks to this fake's
trial-facing REST routes (metrics, checkpoints, progress, preemption long-poll and ack,
all-gather, proxy address, run preparation); reported checkpoints become the experiment's
checkpoints with the validation metrics reported at the same step, and their files are served
by the proxied download. Unmodelled routes answer 404 with the master's error shape.

The image is modelled: Determined's default image (no ``environment.image``) is a python with
the determined SDK and the ML libraries but without ``cdl_gitlab`` (``python3`` on the
trial's PATH is this interpreter with ``-S`` and its site-packages on ``PYTHONPATH``, so the
editable install is not seen); the training image (``environment.image`` set) adds the
package under test. The experiment stays ACTIVE while its trial runs; a trial that exits
non-zero ends its experiment in STATE_ERROR, one that exits 0 follows ``experiment_states``.
``trial_run(experiment_id)`` waits for the trial and gives its command, env, exit code and
output.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from fakes.loopback import LoopbackHTTPFake

PASSWORD_SALT = "GubPEmmotfiK9TMD6Zdw"  # determined.common.api.authentication.PASSWORD_SALT
VERSION = "0.38.1"
MAX_CONTEXT_SIZE = 95 * 1024 * 1024  # determined.common.constants.MAX_CONTEXT_SIZE in 0.38
# bindings.experimentv1State: the states after which an experiment no longer changes
TERMINAL_STATES = (
    "STATE_COMPLETED",
    "STATE_CANCELED",
    "STATE_ERROR",
    "STATE_DELETED",
    "STATE_DELETING",
    "STATE_DELETE_FAILED",
)
TRIAL_STATES = {
    "STATE_ACTIVE",
    "STATE_PAUSED",
    "STATE_STOPPING_CANCELED",
    "STATE_STOPPING_KILLED",
    "STATE_STOPPING_COMPLETED",
    "STATE_STOPPING_ERROR",
    "STATE_CANCELED",
    "STATE_COMPLETED",
    "STATE_ERROR",
    "STATE_QUEUED",
    "STATE_PULLING",
    "STATE_STARTING",
    "STATE_RUNNING",
}  # bindings.trialv1State
# fields of the pod_spec container named determined-container that the 0.38 master's schema
# refuses (disallowProperties, snake_case there; camelCase as Kubernetes specs spell them);
# its env and envFrom are allowed and merged into the trial's container
POD_CONTAINER_REFUSED = (
    "image",
    "command",
    "args",
    "working_dir",
    "workingDir",
    "ports",
    "liveness_probe",
    "livenessProbe",
    "readiness_probe",
    "readinessProbe",
    "startup_probe",
    "startupProbe",
    "lifecycle",
    "image_pull_policy",
    "imagePullPolicy",
    "security_context",
    "securityContext",
)
TRIAL_TIMEOUT = 300


DET_USER = "ci-bot"
DET_PASSWORD = "Sup3r-Secret-pw"  # the fake's test login, never a real credential


def salted_hash(password: str) -> str:
    """The hash the SDK sends for a password (the same salt and SHA-512 as the SDK)."""
    if not password:
        return password
    return hashlib.sha512((PASSWORD_SALT + password).encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    json: Any
    headers: dict[str, str]


@dataclass
class Reply:
    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class _State:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoint_files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    experiments: dict[int, dict[str, Any]] = field(default_factory=dict)
    experiment_files: dict[int, dict[str, bytes]] = field(default_factory=dict)
    experiment_steps: dict[int, int] = field(default_factory=dict)
    experiment_scripts: dict[int, list[str]] = field(default_factory=dict)
    trials: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class TrialRun:
    """What the trial's entrypoint did in the fake's subprocess."""

    command: list[str]
    env: dict[str, str]
    returncode: int
    output: str


class FakeDeterminedMaster(LoopbackHTTPFake):
    """The fake master; use as a context manager or call start()/stop()."""

    thread_name = "fake-det"

    def __init__(self, username: str = "determined", password: str = "") -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.token = "fake-session-token"
        self.requests: list[RecordedRequest] = []
        self.state = _State()
        self.experiment_states = ["STATE_ACTIVE", "STATE_ACTIVE", "STATE_COMPLETED"]
        self.context_limit = MAX_CONTEXT_SIZE
        self.trial_runs: dict[int, TrialRun] = {}
        self._trial_threads: dict[int, threading.Thread] = {}
        # task id -> (experiment id, trial id) of the trials the fake started
        self._tasks: dict[str, tuple[int, int]] = {}
        # trial id -> steps completed -> the validation metrics reported at that step
        self._validations: dict[int, dict[int, dict[str, Any]]] = {}
        # the cluster's default checkpoint storage (a shared directory), outside any working dir
        self.storage_root = Path(tempfile.mkdtemp(prefix="fake-det-storage-"))
        # Kubernetes Secrets of Determined's namespace: name -> {key: value}
        self.kube_secrets: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def stop(self) -> None:
        for thread in list(self._trial_threads.values()):
            thread.join(TRIAL_TIMEOUT)
        super().stop()
        shutil.rmtree(self.storage_root, ignore_errors=True)

    # ---- test API --------------------------------------------------------------------------

    def trial_run(self, experiment_id: int, timeout: float = TRIAL_TIMEOUT) -> TrialRun:
        """The experiment's trial run, once it has ended (waits for its thread)."""
        thread = self._trial_threads.get(experiment_id)
        if thread is not None:
            thread.join(timeout)
        return self.trial_runs[experiment_id]

    def calls(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (r.method, r.path)
            for r in self.requests
            if (method is None or r.method == method) and r.path.startswith(prefix)
        ]

    def add_checkpoint(
        self,
        uuid: str,
        files: dict[str, bytes],
        experiment_id: int = 7,
        trial_id: int = 11,
        state: str = "STATE_COMPLETED",
        validation: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """A checkpoint a trial reported (with its validation metrics, if it had any); its
        files are served by the proxied download."""
        checkpoint = {
            "uuid": uuid,
            "state": state,
            "reportTime": _now(),
            "resources": {name: len(data) for name, data in files.items()},
            "metadata": {"steps_completed": 100},
            "training": {
                "trialId": trial_id,
                "experimentId": experiment_id,
                # storage the test process cannot reach, so the SDK falls back to the master
                "experimentConfig": {
                    "checkpoint_storage": {"type": "directory", "container_path": "/nonexistent"}
                },
                "hparams": {"lr": 0.01},
            },
        }
        if validation is not None:
            checkpoint["training"]["validationMetrics"] = {"avgMetrics": dict(validation)}
        with self._lock:
            self.state.checkpoints[uuid] = checkpoint
            self.state.checkpoint_files[uuid] = dict(files)
        return checkpoint

    # ---- HTTP ------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            json=json.loads(raw) if raw else None,
            headers={k.lower(): v for k, v in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(request)
            try:
                reply = self._respond(request)
            except Exception as exc:  # a bug in the fake: make it visible to the test
                reply = Reply(500, {"message": f"fake master error: {exc!r}"})
        if request.method == "GET" and request.path.endswith("/signals/preemption"):
            # a long poll: the master answers when preempted or after timeout_seconds; never
            # preempted here, so wait (outside the lock) a little before "not preempted"
            wait = float(request.query.get("timeout_seconds", ["0"])[0] or 0)
            time.sleep(min(wait, 1.0))
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # the client went away (a trial's preemption long poll when its process exits)
            handler.close_connection = True

    def _respond(self, request: RecordedRequest) -> Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if parts == ["info"]:
            return Reply(200, self._info())
        if request.method == "POST" and parts == ["api", "v1", "auth", "login"]:
            return self._login(request)
        # a user's token (CLI, SDK) or a task's session token (what a trial sends)
        tokens = (
            request.headers.get("authorization"),
            request.headers.get("grpc-metadata-x-allocation-token"),
        )
        if f"Bearer {self.token}" not in tokens:
            return Reply(401, {"message": "unauthenticated"})
        route = (request.method, *parts)
        match route:
            case ("GET", "api", "v1", "me"):
                return Reply(200, {"user": self._user()})
            case ("GET", "api", "v1", "master"):
                return Reply(200, self._info())
            case ("GET", "api", "v1", "models"):
                return self._page(
                    request, "models", sorted(self.state.models.values(), key=lambda m: m["name"])
                )
            case ("POST", "api", "v1", "models"):
                return self._post_model(request.json or {})
            case ("GET", "api", "v1", "models", name):
                if name not in self.state.models:
                    return Reply(404, {"message": f"model {name!r} not found"})
                return Reply(200, {"model": self.state.models[name]})
            case ("GET", "api", "v1", "models", name, "versions"):
                return self._list_versions(request, name)
            case ("POST", "api", "v1", "models", name, "versions"):
                return self._post_version(name, request.json or {})
            case ("GET", "api", "v1", "models", name, "versions", number):
                found = self._version(name, int(number))
                return found if isinstance(found, Reply) else Reply(200, {"modelVersion": found})
            case ("PATCH", "api", "v1", "models", name, "versions", number):
                return self._patch_version(name, int(number), request.json or {})
            case ("GET", "api", "v1", "checkpoints", uuid):
                if uuid not in self.state.checkpoints:
                    return Reply(404, {"message": f"checkpoint {uuid} not found"})
                return Reply(200, {"checkpoint": self.state.checkpoints[uuid]})
            case ("GET", "checkpoints", uuid):
                return self._download(uuid)
            case ("POST", "api", "v1", "experiments"):
                return self._create_experiment(request.json or {})
            case ("GET", "api", "v1", "experiments", number):
                return self._get_experiment(int(number))
            case ("GET", "api", "v1", "experiments", number, "checkpoints"):
                return self._experiment_checkpoints(request, int(number))
            case ("GET", "api", "v1", "trials", number, "logs"):
                return self._trial_logs(request, int(number))
            case ("GET", "api", "v1", "experiments", number, "trials"):
                trials = self.state.trials.get(int(number))
                if trials is None:
                    return Reply(404, {"message": f"experiment {number} not found"})
                return self._page(request, "trials", trials)
        trial_reply = self._trial_api(request, route)
        if trial_reply is not None:
            return trial_reply
        return Reply(
            404,
            {
                "code": 5,  # gRPC NOT_FOUND, as the master's gateway reports it
                "message": f"fake master has no route {request.method} {request.path}",
                "details": [],
            },
        )

    def _trial_api(self, request: RecordedRequest, route: tuple[str, ...]) -> Reply | None:
        """The routes a trial's SDK calls from its container (None: not one of them)."""
        body = request.json or {}
        match route:
            case ("GET", "api", "v1", "tasks", task_id, "context_directory"):
                if task_id not in self._tasks:
                    return Reply(404, {"message": f"task {task_id} not found"})
                files = self.state.experiment_files[self._tasks[task_id][0]]
                tgz = base64.b64encode(_tar_gz(files)).decode()
                return Reply(200, {"b64Tgz": tgz})
            case ("POST", "api", "v1", "allocations", _, "acceleratorData" | "proxy_address"):
                return Reply(200, {})
            case ("POST", "api", "v1", "allocations", _, "all_gather"):
                # one pod per trial: the gathered data is this pod's own
                return Reply(200, {"data": [body.get("data") or {}]})
            case ("GET", "api", "v1", "allocations", _, "signals", "preemption"):
                return Reply(200, {"preempt": False})
            case ("POST", "api", "v1", "allocations", _, "signals", "ack_preemption"):
                return Reply(200, {})
            case ("POST", "api", "v1", "runs", "start"):
                return Reply(200, {})
            case ("POST", "api", "v1", "trials", trial_id, "metrics"):
                return self._report_metrics(int(trial_id), body)
            case ("POST", "api", "v1", "trials", _, "progress" | "early_exit"):
                return Reply(200, {})
            case ("POST", "api", "v1", "trials", _, "runner", "metadata"):
                return Reply(200, {})
            case ("GET" | "PATCH", "api", "v1", "trials", trial_id):
                trial = self._trial(int(trial_id))
                if trial is None:
                    return Reply(404, {"message": f"trial {trial_id} not found"})
                return Reply(200, {"trial": trial})
            case ("POST", "api", "v1", "checkpoints"):
                return self._report_checkpoint(body)
        return None

    def _trial(self, trial_id: int) -> dict[str, Any] | None:
        for trial in self.state.trials.get(trial_id // 100, []):
            if trial["id"] == trial_id:
                return trial
        return None

    def _report_metrics(self, trial_id: int, body: dict[str, Any]) -> Reply:
        trial = self._trial(trial_id)
        if trial is None:
            return Reply(404, {"message": f"trial {trial_id} not found"})
        metrics = body.get("metrics") or {}
        steps = int(metrics.get("stepsCompleted") or 0)
        values = (metrics.get("metrics") or {}).get("avgMetrics") or {}
        trial["totalBatchesProcessed"] = max(trial.get("totalBatchesProcessed", 0), steps)
        if (body.get("group") or metrics.get("group")) == "validation":
            self._validations.setdefault(trial_id, {})[steps] = dict(values)
            trial["latestValidation"] = {
                "totalBatches": steps,
                "numInputs": 0,
                "endTime": _now(),
                "metrics": {"avgMetrics": dict(values)},
            }
            for checkpoint in self.state.checkpoints.values():
                self._attach_validation(checkpoint)
        return Reply(200, {})

    def _attach_validation(self, checkpoint: dict[str, Any]) -> None:
        """The master links a checkpoint to the validation of the same trial at its step."""
        training = checkpoint["training"]
        steps = (checkpoint.get("metadata") or {}).get("steps_completed")
        found = self._validations.get(training.get("trialId", 0), {}).get(steps)
        if found is not None:
            training["validationMetrics"] = {"avgMetrics": dict(found)}

    def _report_checkpoint(self, body: dict[str, Any]) -> Reply:
        task = self._tasks.get(body.get("taskId") or "")
        if task is None or not body.get("uuid"):
            return Reply(400, {"message": "checkpoint of an unknown task"})
        experiment_id, trial_id = task
        experiment = self.state.experiments[experiment_id]
        trial = self._trial(trial_id) or {}
        checkpoint = {
            "uuid": body["uuid"],
            "taskId": body["taskId"],
            "allocationId": body.get("allocationId"),
            "state": body.get("state") or "STATE_COMPLETED",
            "reportTime": body.get("reportTime") or _now(),
            "resources": body.get("resources") or {},
            "metadata": body.get("metadata") or {},
            "training": {
                "trialId": trial_id,
                "experimentId": experiment_id,
                "experimentConfig": experiment["config"],
                "hparams": trial.get("hparams") or {},
            },
        }
        self._attach_validation(checkpoint)
        self.state.checkpoints[body["uuid"]] = checkpoint
        return Reply(200, {})

    # ---- behaviour -------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "masterId": "fake-master",
            "clusterId": "fake-cluster",
            "clusterName": "fake",
            "hasCustomLogo": False,
            "strictJobQueueControl": False,
        }

    def _user(self) -> dict[str, Any]:
        return {"id": 1, "username": self.username, "admin": True, "active": True}

    def _login(self, request: RecordedRequest) -> Reply:
        body = request.json or {}
        sent = body.get("password", "")
        expected = salted_hash(self.password) if body.get("isHashed") else self.password
        if body.get("username") != self.username or sent != expected:
            return Reply(403, {"message": "invalid credentials"})
        return Reply(200, {"token": self.token, "user": self._user()})

    @staticmethod
    def _page(request: RecordedRequest, key: str, items: list[dict[str, Any]]) -> Reply:
        offset = int(request.query.get("offset", ["0"])[0] or 0)
        limit = int(request.query.get("limit", ["0"])[0] or 0)
        if request.query.get("orderBy", [""])[0] == "ORDER_BY_DESC":
            items = list(reversed(items))
        chunk = items[offset : offset + limit] if limit else items[offset:]
        pagination = {
            "offset": offset,
            "limit": limit,
            "startIndex": offset,
            "endIndex": offset + len(chunk),
            "total": len(items),
        }
        return Reply(200, {key: chunk, "pagination": pagination})

    def _post_model(self, body: dict[str, Any]) -> Reply:
        name = body.get("name")
        if not name:
            return Reply(400, {"message": "model name is required"})
        if name in self.state.models:
            return Reply(409, {"message": f"model {name!r} already exists"})
        model = {
            "id": next(self._ids),
            "name": name,
            "description": body.get("description") or "",
            "metadata": body.get("metadata") or {},
            "labels": body.get("labels") or [],
            "creationTime": _now(),
            "lastUpdatedTime": _now(),
            "numVersions": 0,
            "userId": 1,
            "username": self.username,
            "workspaceId": 1,
            "archived": False,
            "notes": "",
        }
        self.state.models[name] = model
        self.state.versions[name] = []
        return Reply(200, {"model": model})

    def _version(self, name: str, number: int) -> dict[str, Any] | Reply:
        for version in self.state.versions.get(name, []):
            if version["version"] == number:
                return version
        return Reply(404, {"message": f"model {name!r} version {number} not found"})

    def _list_versions(self, request: RecordedRequest, name: str) -> Reply:
        if name not in self.state.models:
            return Reply(404, {"message": f"model {name!r} not found"})
        reply = self._page(request, "modelVersions", self.state.versions[name])
        reply.body["model"] = self.state.models[name]
        return reply

    def _post_version(self, name: str, body: dict[str, Any]) -> Reply:
        model = self.state.models.get(name)
        if model is None:
            return Reply(404, {"message": f"model {name!r} not found"})
        checkpoint = self.state.checkpoints.get(body.get("checkpointUuid", ""))
        if checkpoint is None:
            return Reply(404, {"message": f"checkpoint {body.get('checkpointUuid')} not found"})
        model["numVersions"] += 1
        version = {
            "id": next(self._ids),
            "version": model["numVersions"],
            "model": model,
            "checkpoint": checkpoint,
            "creationTime": _now(),
            "lastUpdatedTime": _now(),
            "metadata": body.get("metadata") or {},
            "labels": [],
            "name": "",
            "comment": "",
            "notes": "",
        }
        self.state.versions[name].append(version)
        return Reply(200, {"modelVersion": version})

    def _patch_version(self, name: str, number: int, body: dict[str, Any]) -> Reply:
        found = self._version(name, number)
        if isinstance(found, Reply):
            return found
        for key in ("metadata", "name", "notes", "comment", "labels"):
            if key in body and body[key] is not None:
                found[key] = copy.deepcopy(body[key])
        found["lastUpdatedTime"] = _now()
        return Reply(200, {"modelVersion": found})

    def _download(self, uuid: str) -> Reply:
        files = self.state.checkpoint_files.get(uuid)
        if files is None and uuid in self.state.checkpoints:
            files = self._stored_files(self.state.checkpoints[uuid])
        if files is None:
            return Reply(404, {"message": f"checkpoint {uuid} not found"})
        return Reply(200, raw=_tar_gz(files), content_type="application/gzip")

    @staticmethod
    def _stored_files(checkpoint: dict[str, Any]) -> dict[str, bytes] | None:
        """A reported checkpoint's files, read from its directory checkpoint storage."""
        storage = checkpoint["training"]["experimentConfig"].get("checkpoint_storage") or {}
        if storage.get("type") != "directory":
            return None
        folder = Path(storage["container_path"], checkpoint["uuid"])
        if not folder.is_dir():
            return None
        return {
            str(path.relative_to(folder)): path.read_bytes()
            for path in folder.rglob("*")
            if path.is_file()
        }

    def _create_experiment(self, body: dict[str, Any]) -> Reply:
        try:
            config = yaml.safe_load(body.get("config") or "") or {}
        except yaml.YAMLError as exc:
            return Reply(400, {"message": f"invalid experiment config: {exc}"})
        if "searcher" not in config:
            return Reply(400, {"message": "invalid experiment config: searcher is required"})
        files: dict[str, bytes] = {}
        for item in body.get("modelDefinition") or []:
            if item.get("type") == ord(tarfile.REGTYPE):
                files[item["path"]] = base64.b64decode(item.get("content") or "")
        size = sum(len(data) for data in files.values())
        if size > self.context_limit:
            return Reply(
                400,
                {"message": f"model definition is {size} bytes, over {self.context_limit}"},
            )
        refused = self._refused_pod_spec(config)
        if refused:
            return Reply(400, {"message": f"invalid experiment config: {refused}"})
        experiment_id = next(self._ids)
        # the master merges the cluster's defaults into the config; the checkpoint storage
        # default is a shared directory
        config.setdefault(
            "checkpoint_storage", {"type": "directory", "container_path": str(self.storage_root)}
        )
        experiment = {
            "id": experiment_id,
            "name": config.get("name") or f"Experiment {experiment_id}",
            "description": config.get("description") or "",
            "labels": config.get("labels") or [],
            "state": self.experiment_states[0],
            "progress": 0.0,
            "archived": False,
            "config": config,
            "originalConfig": body.get("config"),
            "jobId": f"job-{experiment_id}",
            "numTrials": 1,
            "projectId": body.get("projectId") or 1,
            "projectOwnerId": 1,
            "workspaceId": 1,
            "searcherType": config["searcher"].get("name", "single"),
            "startTime": _now(),
            "username": self.username,
            "notes": "",
        }
        self.state.experiments[experiment_id] = experiment
        self.state.experiment_files[experiment_id] = files
        self.state.experiment_steps[experiment_id] = 0
        self.state.trials[experiment_id] = [
            {
                "id": experiment_id * 100 + 1,
                "experimentId": experiment_id,
                "hparams": _resolved_hparams(config.get("hyperparameters") or {}),
                "restarts": 0,
                "startTime": _now(),
                "state": "STATE_QUEUED",
                "totalBatchesProcessed": 0,
            }
        ]
        self._start_trial(experiment_id, config)
        return Reply(200, {"experiment": experiment, "config": config})

    def _finish_trial(self, experiment_id: int, run: TrialRun) -> None:
        with self._lock:
            self.trial_runs[experiment_id] = run
            if run.returncode != 0:
                # the trial fails on the "cluster": the experiment ends in ERROR
                self.state.experiment_scripts[experiment_id] = [
                    *(s for s in self.experiment_states if s not in TERMINAL_STATES),
                    "STATE_ERROR",
                ]

    def _trial_logs(self, request: RecordedRequest, trial_id: int) -> Reply:
        """The trial's output as the master streams it: one ``{"result": ...}`` JSON object
        per line; ``limit`` with ``orderBy=ORDER_BY_DESC`` gives the tail, newest first."""
        run = self.trial_runs.get(trial_id // 100)
        if run is None or trial_id % 100 != 1:
            return Reply(404, {"message": f"trial {trial_id} not found"})
        lines = run.output.splitlines()
        entries = [
            {
                "id": str(index),
                "level": "LOG_LEVEL_INFO",
                "message": line + "\n",
                "timestamp": _now(),
                "trialId": trial_id,
            }
            for index, line in enumerate(lines, 1)
        ]
        if request.query.get("orderBy", [""])[0] == "ORDER_BY_DESC":
            entries.reverse()
        limit = int(request.query.get("limit", ["0"])[0] or 0)
        if limit:
            entries = entries[:limit]
        body = b"".join(json.dumps({"result": entry}).encode() + b"\n" for entry in entries)
        return Reply(200, raw=body, content_type="application/json")

    @staticmethod
    def _refused_pod_spec(config: dict[str, Any]) -> str:
        pod_spec = (config.get("environment") or {}).get("pod_spec") or {}
        for container in (pod_spec.get("spec") or {}).get("containers") or []:
            if container.get("name") != "determined-container":
                continue
            for key in POD_CONTAINER_REFUSED:
                if key in container:
                    return f"environment.pod_spec: container {key} is not configurable"
        return ""

    def _pod_env(self, config: dict[str, Any]) -> tuple[dict[str, str], str]:
        """The determined-container's ``env`` resolved against ``kube_secrets`` (what the
        kubelet does), or the error that keeps the pod from starting."""
        pod_spec = (config.get("environment") or {}).get("pod_spec") or {}
        env: dict[str, str] = {}
        for container in (pod_spec.get("spec") or {}).get("containers") or []:
            if container.get("name") != "determined-container":
                continue
            for entry in container.get("env") or []:
                if "value" in entry:
                    env[entry["name"]] = str(entry["value"])
                    continue
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
                secret = self.kube_secrets.get(ref.get("name", ""))
                if secret is not None and ref.get("key") in secret:
                    env[entry["name"]] = secret[ref["key"]]
                elif not ref.get("optional"):
                    return env, (
                        f"CreateContainerConfigError: secret {ref.get('name')!r} or its key "
                        f"{ref.get('key')!r} not found"
                    )
        return env, ""

    def _start_trial(self, experiment_id: int, config: dict[str, Any]) -> None:
        """Start the experiment's trial pod in a background thread (see the module docstring)."""
        trial = self.state.trials[experiment_id][0]
        task_id = f"{experiment_id}.{trial['id']}"
        self._tasks[task_id] = (experiment_id, trial["id"])
        environment = config.get("environment") or {}
        variables = environment.get("environment_variables") or []
        if isinstance(variables, dict):
            variables = variables.get("cpu") or []
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        env.update(item.partition("=")[::2] for item in variables)
        pod_env, error = self._pod_env(config)
        if error:
            self._finish_trial(experiment_id, TrialRun([], env, 1, error))
            return
        env.update(pod_env)
        # Both images have Python with the determined SDK and the ML libraries (this
        # interpreter's site-packages, without processing .pth files: the editable install
        # of cdl-gitlab is not seen); only the training image adds cdl-gitlab.
        paths = [sysconfig.get_paths()["purelib"]]
        if environment.get("image"):
            spec = importlib.util.find_spec("cdl_gitlab")
            assert spec is not None and spec.origin is not None
            paths.insert(0, str(Path(spec.origin).parents[1]))  # the package under test
        env["PYTHONPATH"] = os.pathsep.join(paths)
        allocation_id = f"{task_id}.1"
        env.update(
            {
                "HOME": "/run/determined/workdir",
                "DET_PYTHON_EXECUTABLE": "python3",
                "DET_MASTER": self.url,
                "DET_USER": self.username,
                "DET_SESSION_TOKEN": self.token,
                "DET_CLUSTER_ID": "fake-cluster",
                "DET_AGENT_ID": "fake-agent",
                "DET_SLOT_IDS": "[0]",
                "DET_TASK_ID": task_id,
                "DET_ALLOCATION_ID": allocation_id,
                "DET_TASK_TYPE": "TRIAL",
                "DET_RESOURCES_ID": f"{allocation_id}-pod",
                "DET_RESOURCES_TYPE": "k8s-job",
                "DET_KUBERNETES_JOB_PARALLELISM": "1",
                "DET_KUBERNETES_POD_IP": "127.0.0.1",
                "DET_EXPERIMENT_ID": str(experiment_id),
                "DET_TRIAL_ID": str(trial["id"]),
                "DET_TRIAL_SEED": "0",
                "DET_TRIAL_RUN_ID": "1",
                "DET_STEPS_COMPLETED": "0",
                "DET_HPARAMS": json.dumps(trial["hparams"]),
                "DET_EXPERIMENT_CONFIG": json.dumps(config),
            }
        )
        checkpoint_storage = config["checkpoint_storage"]
        storage = (
            checkpoint_storage.get("container_path", "")
            if checkpoint_storage.get("type") == "directory"
            else ""
        )
        thread = threading.Thread(
            target=lambda: self._finish_trial(experiment_id, self._run_pod(env, storage)),
            daemon=True,
            name=f"fake-det-trial-{experiment_id}",
        )
        self._trial_threads[experiment_id] = thread
        thread.start()

    @staticmethod
    def _run_pod(env: dict[str, str], storage: str) -> TrialRun:
        """The trial container: its own mount namespace with a tmpfs over ``/run`` (the SDK's
        info files, the working dir and the image's ``python3`` launcher live there) and over
        ``/tmp`` (the pod's own; the SDK links its TensorBoard folder there), then the master's
        entrypoint steps (prep_container, rendezvous, launch). Mounted back at their own paths
        over the tmpfs, as volumes: the directory checkpoint storage, and the image's Python
        where it lies under ``/tmp`` (this interpreter's environment and the ``PYTHONPATH``
        entries of a checkout in ``/tmp``)."""
        image = [sys.prefix, *env["PYTHONPATH"].split(os.pathsep)]
        hidden = [path for path in image if path.startswith("/tmp/") and Path(path).is_dir()]
        volumes = list(dict.fromkeys([*([storage] if Path(storage).is_dir() else []), *hidden]))
        script = "\n".join(
            [
                "set -e",
                'python="$1"; shift',
                "mount -t tmpfs fake-det-run /run",
                "mkdir -p /run/determined/info /run/determined/workdir /run/determined/image",
                "mkdir /run/determined/volumes",
                "i=0",
                'for path in "$@"; do',
                "  i=$((i + 1)); mkdir /run/determined/volumes/$i",
                '  mount --bind "$path" /run/determined/volumes/$i',
                "done",
                "mount -t tmpfs fake-det-tmp /tmp",
                "i=0",
                'for path in "$@"; do',
                '  i=$((i + 1)); mkdir -p "$path"; mount --bind /run/determined/volumes/$i "$path"',
                "done",
                "for name in python3 python; do",
                '  printf \'#!/bin/sh\\nexec "%s" -S "$@"\\n\' "$python"'
                " > /run/determined/image/$name",
                "  chmod 755 /run/determined/image/$name",
                "done",
                "cd /run/determined/workdir",
                "python3 -m determined.exec.prep_container --download_context_directory"
                " --resources --proxy",
                "python3 -m determined.exec.prep_container --rendezvous",
                "exec python3 -m determined.exec.launch",
            ]
        )
        command = [
            *("unshare", "--mount", "--map-root-user", "bash", "-c", script),
            *("fake-det-pod", sys.executable, *volumes),
        ]
        env = {**env, "PATH": f"/run/determined/image:{env['PATH']}"}
        try:
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                timeout=TRIAL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return TrialRun(command, env, -1, f"timed out: {exc}")
        return TrialRun(command, env, done.returncode, done.stdout + done.stderr)

    def _get_experiment(self, experiment_id: int) -> Reply:
        experiment = self.state.experiments.get(experiment_id)
        if experiment is None:
            return Reply(404, {"message": f"experiment {experiment_id} not found"})
        if experiment_id not in self.trial_runs:  # its trial still runs
            experiment["state"] = "STATE_ACTIVE"
            for trial in self.state.trials[experiment_id]:
                trial["state"] = "STATE_RUNNING"
            return Reply(200, {"experiment": experiment})
        states = self.state.experiment_scripts.get(experiment_id) or self.experiment_states
        step = min(self.state.experiment_steps[experiment_id], len(states) - 1)
        self.state.experiment_steps[experiment_id] += 1
        experiment["state"] = states[step]
        experiment["progress"] = (step + 1) / len(states)
        finished = experiment["state"] in TERMINAL_STATES
        if finished:
            experiment.setdefault("endTime", _now())
        for trial in self.state.trials[experiment_id]:
            # trialv1State has no DELETE* states: a deleted experiment's trials keep theirs
            if not finished:
                trial["state"] = "STATE_RUNNING"
            elif experiment["state"] in TRIAL_STATES:
                trial["state"] = experiment["state"]
            trial["totalBatchesProcessed"] = max(
                trial.get("totalBatchesProcessed", 0), 100 * (step + 1)
            )
        return Reply(200, {"experiment": experiment})

    def _experiment_checkpoints(self, request: RecordedRequest, experiment_id: int) -> Reply:
        """Completed checkpoints, best first by the searcher metric (the master's order when
        no orderBy is given: ``smaller_is_better``); those without the metric (never
        validated) come last, as the master sorts NULLs."""
        experiment = self.state.experiments.get(experiment_id)
        if experiment is None:
            return Reply(404, {"message": f"experiment {experiment_id} not found"})
        searcher = experiment["config"]["searcher"]
        metric = searcher.get("metric")
        if request.query.get("sortByAttr", [""])[0] != "SORT_BY_SEARCHER_METRIC" or not metric:
            return Reply(400, {"message": "fake master sorts by the searcher metric only"})
        found = [
            c
            for c in self.state.checkpoints.values()
            if c["training"]["experimentId"] == experiment_id and c["state"] == "STATE_COMPLETED"
        ]

        def value(checkpoint: dict[str, Any]) -> float | None:
            metrics = checkpoint["training"].get("validationMetrics", {}).get("avgMetrics", {})
            return metrics.get(metric)

        validated = [c for c in found if value(c) is not None]
        validated.sort(key=value, reverse=not searcher.get("smaller_is_better", True))  # type: ignore[arg-type]
        found = validated + [c for c in found if value(c) is None]
        return self._page(request, "checkpoints", found)


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _resolved_hparams(space: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of the single searcher's trial: constants as their values, nested
    groups resolved, other kinds at their first value (categorical) or lower bound."""
    resolved: dict[str, Any] = {}
    for name, value in space.items():
        if not isinstance(value, dict):
            resolved[name] = value
        elif "type" not in value:
            resolved[name] = _resolved_hparams(value)
        elif value["type"] == "const":
            resolved[name] = value["val"]
        elif value["type"] == "categorical":
            resolved[name] = value["vals"][0]
        else:
            resolved[name] = value.get("minval")
    return resolved


TRAIN_IMAGE = "registry.example.org/group/project/train@sha256:" + "ab" * 32
TRIAL_DSN = "postgresql://trial:pw@labels.example.org:5432/labels"


def trial_endpoints(monkeypatch: Any, pachd_address: str = "127.0.0.1:30650") -> None:
    """What a CI job of the cluster profile has in its environment for the trial: the image
    digest (model-build-image's dotenv report), the labels DSN and Pachyderm's address (kept
    when a test already set one)."""
    monkeypatch.setenv("CDL_TRAIN_IMAGE", TRAIN_IMAGE)
    monkeypatch.setenv("CDL_POSTGRES_DSN", TRIAL_DSN)
    if not os.environ.get("PACHD_ADDRESS"):
        monkeypatch.setenv("PACHD_ADDRESS", pachd_address)
