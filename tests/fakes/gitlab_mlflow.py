"""A fake of GitLab's MLflow endpoint (``/api/v4/projects/<id>/ml/mlflow``) at the HTTP boundary.

It serves the subset GitLab documents (experiments create/get, runs create/search/log-*,
artifact upload and download, registered-model and model-version creation, latest versions)
with GitLab's caveats: a search takes exactly one experiment and no filter, registered-model
tags are ignored, a model may not be named like an experiment, a model version's source and
run id are dropped and its version is the semver of the ``gitlab.version`` tag. Every other
endpoint (run updates, run get, model-version tags, aliases, ``logged-models``, server info)
is answered as GitLab's router answers an unknown route: 404 ``{"error": "404 Not Found"}``.
Every request is recorded as ``(method, path below the tracking URI)``.

    with FakeGitLabMlflow(token="glpat-x") as fake:
        os.environ["MLFLOW_TRACKING_URI"] = fake.tracking_uri
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fakes.loopback import LoopbackHTTPFake

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
Answer = tuple[int, Any]


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error_code": code, "message": message}


class FakeGitLabMlflow(LoopbackHTTPFake):
    thread_name = "fake-gitlab-mlflow"

    def __init__(self, token: str = "glpat-mlflow-token", project_id: int = 7) -> None:
        super().__init__()
        self.token = token
        self.prefix = f"/api/v4/projects/{project_id}/ml/mlflow"
        self.calls: list[tuple[str, str]] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.artifacts: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    @property
    def tracking_uri(self) -> str:
        return f"{self.url}{self.prefix}"

    # -- HTTP ------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = split.path
        inside = path.startswith(self.prefix + "/")
        sub = path[len(self.prefix) :] if inside else path
        with self._lock:
            self.calls.append((handler.command, sub))
            if handler.headers.get("Authorization", "") != f"Bearer {self.token}":
                status, body = 401, {"message": "401 Unauthorized"}
            elif not inside:
                status, body = 404, {"error": "404 Not Found"}
            else:
                status, body = self._route(handler.command, sub, parse_qs(split.query), raw)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        kind = "application/octet-stream" if isinstance(body, bytes) else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Answer:
        artifacts = "/api/2.0/mlflow-artifacts/artifacts"
        if path.startswith(artifacts + "/") and method in ("PUT", "GET"):
            key = unquote(path[len(artifacts) + 1 :])
            if method == "PUT":
                self.artifacts[key] = raw
                return 200, {}
            if key not in self.artifacts:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"artifact {key} not found")
            return 200, self.artifacts[key]
        if path == artifacts and method == "GET":
            return 200, self._list_artifacts(unquote(query.get("path", [""])[0]))
        body = json.loads(raw) if raw else {}
        args = {key: values[-1] for key, values in query.items()}
        handler = _ROUTES.get((method, path.removeprefix("/api/2.0/mlflow/")))
        if handler is None:
            return 404, {"error": "404 Not Found"}
        return handler(self, body, args)

    # -- experiments and runs ----------------------------------------------------------------

    def _experiment_named(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.experiments.values() if e["name"] == name), None)

    def _create_experiment(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        name = str(body.get("name") or "")
        if not name:
            return _error(400, "INVALID_PARAMETER_VALUE", "name is required")
        if self._experiment_named(name):
            return _error(400, "RESOURCE_ALREADY_EXISTS", f"experiment {name} exists")
        experiment_id = str(next(self._ids))
        self.experiments[experiment_id] = {
            "experiment_id": experiment_id,
            "name": name,
            "artifact_location": "mlflow-artifacts:/",
            "lifecycle_stage": "active",
            "tags": [],
        }
        return 200, {"experiment_id": experiment_id}

    def _get_experiment(self, _: dict[str, Any], args: dict[str, str]) -> Answer:
        found = self.experiments.get(args.get("experiment_id", ""))
        if found is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", "experiment not found")
        return 200, {"experiment": found}

    def _get_experiment_by_name(self, _: dict[str, Any], args: dict[str, str]) -> Answer:
        found = self._experiment_named(args.get("experiment_name", ""))
        if found is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", "experiment not found")
        return 200, {"experiment": found}

    def _create_run(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        experiment_id = str(body.get("experiment_id") or "")
        if experiment_id not in self.experiments:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", "experiment not found")
        run_id = f"{next(self._ids):032x}"
        candidate = f"candidate_{run_id[-6:]}"
        self.runs[run_id] = {
            "info": {
                "run_id": run_id,
                "run_uuid": run_id,
                "experiment_id": experiment_id,
                "run_name": str(body.get("run_name") or ""),
                "user_id": "root",
                "status": "RUNNING",
                "start_time": int(body.get("start_time") or time.time() * 1000),
                "artifact_uri": f"mlflow-artifacts:/{candidate}",
                "lifecycle_stage": "active",
            },
            "data": {"metrics": [], "params": [], "tags": list(body.get("tags") or [])},
        }
        return 200, {"run": self.runs[run_id]}

    def _search_runs(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        ids = [str(i) for i in body.get("experiment_ids") or []]
        if len(ids) != 1:
            return _error(400, "INVALID_PARAMETER_VALUE", "exactly one experiment id")
        runs = [run for run in self.runs.values() if run["info"]["experiment_id"] == ids[0]]
        return 200, {"runs": sorted(runs, key=lambda run: run["info"]["start_time"])}

    def _run(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return self.runs.get(str(body.get("run_id") or body.get("run_uuid") or ""))

    def _log_batch(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        run = self._run(body)
        if run is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", "run not found")
        data = run["data"]
        data["metrics"].extend(body.get("metrics") or [])
        for kind in ("params", "tags"):
            for item in body.get(kind) or []:
                data[kind] = [old for old in data[kind] if old["key"] != item["key"]] + [item]
        return 200, {}

    def _log_parameter(self, body: dict[str, Any], args: dict[str, str]) -> Answer:
        param = {"key": body.get("key"), "value": body.get("value")}
        return self._log_batch({"run_id": body.get("run_id"), "params": [param]}, args)

    def _log_metric(self, body: dict[str, Any], args: dict[str, str]) -> Answer:
        metric = {k: body.get(k) for k in ("key", "value", "timestamp", "step")}
        return self._log_batch({"run_id": body.get("run_id"), "metrics": [metric]}, args)

    def _list_artifacts(self, path: str) -> dict[str, Any]:
        prefix = path.rstrip("/") + "/"
        children = {
            key[len(prefix) :].split("/", 1)[0]
            for key in self.artifacts
            if key.startswith(prefix) and key != path
        }
        return {"files": [{"path": name, "is_dir": False} for name in sorted(children)]}

    # -- model registry --------------------------------------------------------------------

    def _create_registered_model(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        name = str(body.get("name") or "")
        if name in self.models:
            return _error(400, "RESOURCE_ALREADY_EXISTS", f"model {name} exists")
        if self._experiment_named(name):
            return _error(400, "RESOURCE_ALREADY_EXISTS", f"an experiment is named {name}")
        stamp = int(time.time() * 1000)
        self.models[name] = {
            "name": name,
            "creation_timestamp": stamp,
            "last_updated_timestamp": stamp,
            "description": body.get("description") or "",
            "tags": [],  # GitLab ignores them
        }
        self.versions[name] = []
        return 200, {"registered_model": self.models[name]}

    def _create_model_version(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        name = str(body.get("name") or "")
        if name not in self.models:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"model {name} not found")
        tags = list(body.get("tags") or [])
        version = next((t["value"] for t in tags if t["key"] == "gitlab.version"), None)
        existing = self.versions[name]
        if version is None:
            version = f"{len(existing) + 1}.0.0"
        if not SEMVER.match(version):
            return _error(400, "INVALID_PARAMETER_VALUE", "version must be semantic")
        if any(v["version"] == version for v in existing):
            return _error(400, "RESOURCE_ALREADY_EXISTS", f"version {version} exists")
        stamp = int(time.time() * 1000)
        entry = {
            "name": name,
            "version": version,
            "creation_timestamp": stamp,
            "last_updated_timestamp": stamp,
            "current_stage": "None",
            "description": body.get("description") or "",
            "source": "",  # GitLab ignores source and run_id
            "run_id": "",
            "status": "READY",
            "tags": tags,
        }
        existing.append(entry)
        return 200, {"model_version": entry}

    def _latest_versions(self, body: dict[str, Any], _: dict[str, str]) -> Answer:
        name = str(body.get("name") or "")
        if name not in self.models:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"model {name} not found")
        return 200, {"model_versions": self.versions[name][-1:]}


_ROUTES = {
    ("POST", "experiments/create"): FakeGitLabMlflow._create_experiment,
    ("GET", "experiments/get"): FakeGitLabMlflow._get_experiment,
    ("GET", "experiments/get-by-name"): FakeGitLabMlflow._get_experiment_by_name,
    ("POST", "runs/create"): FakeGitLabMlflow._create_run,
    ("POST", "runs/search"): FakeGitLabMlflow._search_runs,
    ("POST", "runs/log-batch"): FakeGitLabMlflow._log_batch,
    ("POST", "runs/log-parameter"): FakeGitLabMlflow._log_parameter,
    ("POST", "runs/log-metric"): FakeGitLabMlflow._log_metric,
    ("POST", "registered-models/create"): FakeGitLabMlflow._create_registered_model,
    ("POST", "model-versions/create"): FakeGitLabMlflow._create_model_version,
    ("POST", "registered-models/get-latest-versions"): FakeGitLabMlflow._latest_versions,
}
