"""A real HTTP fake of the GitLab REST API v4, for tests that drive python-gitlab.

It listens on 127.0.0.1 (free port) in a background thread, records every request
and serves a small route table with in-memory state: user, namespaces/groups,
projects, protected branches, CI/CD variables (environment-scoped: a variable of scope
"*" is stored as "KEY", one of another scope as "KEY@scope"), environments, protected
environments, project access tokens, issues and merge requests. It does not
serve git: a project's `http_url_to_repo` comes from `repo_url` (e.g. the file://
URL of a bare repository the test created).

    with FakeGitLab(token="glpat-test") as fake:
        fake.add_namespace("group")
        fake.fail("POST", "/api/v4/projects", 403, {"message": "403 Forbidden"})
        ...
        assert fake.calls()[0] == ("GET", "/api/v4/user")

Extend it with `fake.route("POST", "/api/v4/projects/{project}/things", handler)`;
a handler gets the RecordedRequest and the path parameters (decoded) and returns
`(status, body)` or `(status, body, headers)`. Later routes win over earlier ones.
Paths in patterns, `fail()` and `calls()` are as sent on the wire: a project path
used as id is one %2F-encoded segment ("/api/v4/projects/group%2Fname").
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fakes.loopback import LoopbackHTTPFake

Response = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[..., Response]

ACCESS_DESCRIPTIONS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers"}
MASKABLE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+=/@:.~-"


@dataclass
class RecordedRequest:
    """One request as the server saw it (headers with lower-case names)."""

    method: str
    path: str  # raw, still percent-encoded, without the query
    query: dict[str, list[str]]
    json: Any
    headers: dict[str, str]
    raw_body: bytes = b""

    @property
    def segments(self) -> list[str]:
        return _segments(self.path)


@dataclass
class _Failure:
    method: str
    pattern: list[str]
    status: int
    body: Any
    times: int | None


@dataclass
class _Route:
    method: str
    pattern: list[str]
    handler: Handler


def _segments(path: str) -> list[str]:
    return [unquote(part) for part in path.strip("/").split("/")]


def _match(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def _message(status: int) -> dict[str, str]:
    return {"message": f"{status} {HTTPStatus(status).phrase}"}


@dataclass
class _State:
    user: dict[str, Any]
    namespaces: dict[int, dict[str, Any]] = field(default_factory=dict)
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    protected_branches: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    environments: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    protected_environments: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    access_tokens: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    deploy_tokens: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    merge_requests: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issue_notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


class FakeGitLab(LoopbackHTTPFake):
    """The fake server; use as a context manager or call start()/stop()."""

    thread_name = "fake-gitlab"

    def __init__(
        self,
        token: str | None = "glpat-fake-token",
        username: str = "root",
        repo_url: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        """`token`: the PRIVATE-TOKEN (or Bearer) every request must carry (None: no auth).

        `repo_url(path_with_namespace)` gives a project's http_url_to_repo.
        """
        self.token = token
        self.repo_url = repo_url
        self.requests: list[RecordedRequest] = []
        self.state = _State(user={"id": 1, "username": username, "name": username.title()})
        self._ids = itertools.count(100)
        self._lock = threading.RLock()
        self._routes: list[_Route] = []
        self._failures: list[_Failure] = []
        self._install_routes()

    # ---- test API --------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve `method pattern` with `handler(request, **params)` (overrides earlier routes)."""
        with self._lock:
            self._routes.append(_Route(method.upper(), _segments(pattern), handler))

    def fail(
        self, method: str, path: str, status: int, body: Any = None, times: int | None = None
    ) -> None:
        """Answer `method path` (a concrete path or a {param} pattern) with an error.

        `times`: how many requests fail (None: all of them).
        """
        with self._lock:
            self._failures.append(
                _Failure(
                    method.upper(),
                    _segments(path),
                    status,
                    _message(status) if body is None else body,
                    times,
                )
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def calls(self, method: str | None = None, prefix: str = "") -> list[tuple[str, str]]:
        """(method, raw path) of the recorded requests, optionally filtered."""
        return [
            (r.method, r.path)
            for r in self.requests
            if (method is None or r.method == method.upper()) and r.path.startswith(prefix)
        ]

    def find(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests matching `method` and a concrete path or {param} pattern."""
        pattern = _segments(path)
        return [
            r
            for r in self.requests
            if r.method == method.upper() and _match(pattern, r.segments) is not None
        ]

    def add_namespace(self, full_path: str, kind: str = "group") -> dict[str, Any]:
        with self._lock:
            ns_id = next(self._ids)
            name = full_path.rsplit("/", 1)[-1]
            namespace = {
                "id": ns_id,
                "name": name,
                "path": name,
                "kind": kind,
                "full_path": full_path,
                "parent_id": None,
                "web_url": f"{self.url}/{full_path}",
            }
            self.state.namespaces[ns_id] = namespace
            return namespace

    def add_project(self, path_with_namespace: str, **fields: Any) -> dict[str, Any]:
        """A project that already exists (its namespace is added if missing)."""
        namespace_path, _, name = path_with_namespace.rpartition("/")
        with self._lock:
            namespace = self._namespace(namespace_path) or self.add_namespace(namespace_path)
            project = self._create_project({"name": name, "path": name}, namespace)
            project.update(fields)
            return project

    def project(self, ref: str | int) -> dict[str, Any] | None:
        """A project by id or path_with_namespace."""
        with self._lock:
            for project in self.state.projects.values():
                if str(project["id"]) == str(ref) or project["path_with_namespace"] == ref:
                    return project
            return None

    # ---- HTTP ------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        body: Any = None
        if raw and "json" in content_type:
            body = json.loads(raw)
        elif raw and "x-www-form-urlencoded" in content_type:
            body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            json=body,
            headers={k.lower(): v for k, v in handler.headers.items()},
            raw_body=raw,
        )
        with self._lock:
            self.requests.append(request)
            response = self._respond(request)
        status, payload, *rest = response
        headers = rest[0] if rest else {}
        data = b"" if status == 204 or payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if data:
            handler.wfile.write(data)

    def _respond(self, request: RecordedRequest) -> Response:
        segments = request.segments
        for failure in self._failures:
            if failure.method == request.method and _match(failure.pattern, segments) is not None:
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                return failure.status, failure.body
        if self.token is not None:
            sent = request.headers.get("private-token") or request.headers.get(
                "authorization", ""
            ).removeprefix("Bearer ")
            if sent != self.token:
                return 401, _message(401)
        for route in reversed(self._routes):
            if route.method != request.method:
                continue
            params = _match(route.pattern, segments)
            if params is not None:
                return route.handler(request, **params)
        return 404, {"error": "404 Not Found"}

    # ---- GitLab behaviour ------------------------------------------------------------------

    def _install_routes(self) -> None:
        api = "/api/v4"
        project = f"{api}/projects/{{project}}"
        for method, pattern, handler in [
            ("GET", f"{api}/user", lambda r: (200, self.state.user)),
            ("GET", f"{api}/namespaces/{{namespace}}", self._get_namespace),
            ("GET", f"{api}/groups/{{namespace}}", self._get_group),
            ("GET", project, self._get_project),
            ("POST", f"{api}/projects", self._post_project),
            ("PUT", project, self._put_project),
            ("GET", f"{project}/protected_branches", self._list_protected),
            ("GET", f"{project}/protected_branches/{{name}}", self._get_protected),
            ("POST", f"{project}/protected_branches", self._post_protected),
            ("DELETE", f"{project}/protected_branches/{{name}}", self._delete_protected),
            ("GET", f"{project}/variables", self._list_variables),
            ("GET", f"{project}/variables/{{key}}", self._get_variable),
            ("POST", f"{project}/variables", self._post_variable),
            ("PUT", f"{project}/variables/{{key}}", self._put_variable),
            ("GET", f"{project}/protected_environments", self._list_protected_environments),
            ("POST", f"{project}/protected_environments", self._post_protected_environment),
            ("GET", f"{project}/access_tokens", self._list_access_tokens),
            ("POST", f"{project}/access_tokens", self._post_access_token),
            ("GET", f"{project}/deploy_tokens", self._list_deploy_tokens),
            ("POST", f"{project}/deploy_tokens", self._post_deploy_token),
            ("GET", f"{project}/environments", self._list_environments),
            ("POST", f"{project}/environments", self._post_environment),
            ("GET", f"{project}/issues", self._list_issues),
            ("POST", f"{project}/issues", self._post_issue),
            ("GET", f"{project}/merge_requests", self._list_merge_requests),
            ("POST", f"{project}/merge_requests", self._post_merge_request),
            ("GET", f"{project}/merge_requests/{{iid}}", self._get_merge_request),
            ("PUT", f"{project}/merge_requests/{{iid}}", self._put_merge_request),
            ("POST", f"{project}/issues/{{iid}}/notes", self._post_issue_note),
        ]:
            self.route(method, pattern, handler)

    def _namespace(self, ref: str) -> dict[str, Any] | None:
        for namespace in self.state.namespaces.values():
            if str(namespace["id"]) == ref or namespace["full_path"] == ref:
                return namespace
        return None

    def _get_namespace(self, request: RecordedRequest, namespace: str) -> Response:
        found = self._namespace(namespace)
        return (200, found) if found else (404, {"message": "404 Namespace Not Found"})

    def _get_group(self, request: RecordedRequest, namespace: str) -> Response:
        found = self._namespace(namespace)
        if not found or found["kind"] != "group":
            return 404, {"message": "404 Group Not Found"}
        return 200, found

    def _create_project(self, data: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
        project_id = next(self._ids)
        path = data.get("path") or data["name"]
        full = f"{namespace['full_path']}/{path}"
        project = {
            "id": project_id,
            "name": data.get("name", path),
            "path": path,
            "path_with_namespace": full,
            "description": data.get("description") or "",
            "visibility": data.get("visibility", "private"),
            "default_branch": None,
            "namespace": {k: namespace[k] for k in ("id", "name", "path", "kind", "full_path")},
            "http_url_to_repo": self.repo_url(full) if self.repo_url else f"{self.url}/{full}.git",
            "web_url": f"{self.url}/{full}",
        }
        self.state.projects[project_id] = project
        for table in (
            self.state.protected_branches,
            self.state.variables,
            self.state.environments,
            self.state.protected_environments,
        ):
            table[project_id] = {}
        self.state.access_tokens[project_id] = []
        self.state.deploy_tokens[project_id] = []
        self.state.issues[project_id] = []
        self.state.merge_requests[project_id] = []
        self.state.issue_notes[project_id] = []
        return project

    def _with_project(self, ref: str) -> tuple[dict[str, Any] | None, Response]:
        found = self.project(ref)
        return found, (404, {"message": "404 Project Not Found"})

    def _get_project(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        return (200, found) if found else missing

    def _post_project(self, request: RecordedRequest) -> Response:
        data = request.json or {}
        if not data.get("name") and not data.get("path"):
            return 400, {"message": "name is missing"}
        ns_ref = data.get("namespace_id")
        namespace = (
            self._namespace(str(ns_ref))
            if ns_ref is not None
            else self._namespace(self.state.user["username"])
            or self.add_namespace(self.state.user["username"], kind="user")
        )
        if namespace is None:
            return 404, {"message": "404 Namespace Not Found"}
        path = data.get("path") or data["name"]
        if self.project(f"{namespace['full_path']}/{path}"):
            return 400, {
                "message": {"path": ["has already been taken"], "name": ["has already been taken"]}
            }
        return 201, self._create_project(data, namespace)

    def _put_project(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        for key, value in (request.json or {}).items():
            if key in {"default_branch", "description", "visibility", "name"}:
                found[key] = value
        return 200, found

    def _list_protected(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        return 200, list(self.state.protected_branches[found["id"]].values())

    def _get_protected(self, request: RecordedRequest, project: str, name: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        branch = self.state.protected_branches[found["id"]].get(name)
        return (200, branch) if branch else (404, {"message": "404 Not found"})

    def _post_protected(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        name = data.get("name")
        branches = self.state.protected_branches[found["id"]]
        if not name:
            return 400, {"error": "name is missing"}
        if name in branches:
            return 409, {"message": f"Protected branch '{name}' already exists"}

        def levels(key: str) -> list[dict[str, Any]]:
            level = int(data.get(key, 40))
            return [
                {
                    "access_level": level,
                    "access_level_description": ACCESS_DESCRIPTIONS.get(level, str(level)),
                }
            ]

        branches[name] = {
            "id": next(self._ids),
            "name": name,
            "push_access_levels": levels("push_access_level"),
            "merge_access_levels": levels("merge_access_level"),
            "unprotect_access_levels": [],
            "allow_force_push": False,
            "code_owner_approval_required": False,
        }
        return 201, branches[name]

    def _delete_protected(self, request: RecordedRequest, project: str, name: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        if self.state.protected_branches[found["id"]].pop(name, None) is None:
            return 404, {"message": "404 Not found"}
        return 204, None

    def _list_variables(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        return (200, list(self.state.variables[found["id"]].values())) if found else missing

    @staticmethod
    def variable_id(key: str, scope: str = "*") -> str:
        """The state key of a variable: "KEY" for scope "*", else "KEY@scope"."""
        return key if scope == "*" else f"{key}@{scope}"

    def _scoped(self, variables: dict[str, Any], key: str, request: RecordedRequest) -> Any:
        """The one variable ``key`` (with ``filter[environment_scope]``), or an error."""
        scope = (request.query.get("filter[environment_scope]") or [None])[0]
        if scope is not None:
            found = variables.get(self.variable_id(key, scope))
            return found or (404, {"message": "404 Variable Not Found"})
        matches = [v for v in variables.values() if v["key"] == key]
        if len(matches) > 1:
            message = (
                "There are multiple variables with provided parameters. Please use "
                "'filter[environment_scope]'"
            )
            return 409, {"message": message}
        return matches[0] if matches else (404, {"message": "404 Variable Not Found"})

    def _get_variable(self, request: RecordedRequest, project: str, key: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        variable = self._scoped(self.state.variables[found["id"]], key, request)
        return variable if isinstance(variable, tuple) else (200, variable)

    @staticmethod
    def _variable(data: dict[str, Any], key: str) -> tuple[dict[str, Any] | None, Response]:
        """GitLab's masking rule: the classic alphabet, or any printable ASCII but whitespace
        when the variable is raw (never expanded); at least 8 characters."""
        value = str(data.get("value", ""))
        masked = bool(data.get("masked", False))
        raw = bool(data.get("raw", False))
        allowed = (lambda ch: "!" <= ch <= "~") if raw else (lambda ch: ch in MASKABLE)
        if masked and (len(value) < 8 or not all(allowed(ch) for ch in value)):
            return None, (400, {"message": {"value": ["is invalid"]}})
        variable = {
            "variable_type": data.get("variable_type", "env_var"),
            "key": key,
            "value": value,
            "protected": bool(data.get("protected", False)),
            "masked": masked,
            "raw": raw,
            "environment_scope": data.get("environment_scope", "*"),
        }
        return variable, (200, variable)

    def _post_variable(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        key = data.get("key", "")
        variables = self.state.variables[found["id"]]
        state_id = self.variable_id(key, data.get("environment_scope", "*"))
        if state_id in variables:
            return 400, {"message": {"key": [f"({key}) has already been taken"]}}
        variable, response = self._variable(data, key)
        if variable is None:
            return response
        variables[state_id] = variable
        return 201, variable

    def _put_variable(self, request: RecordedRequest, project: str, key: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        variables = self.state.variables[found["id"]]
        current = self._scoped(variables, key, request)
        if isinstance(current, tuple):
            return current
        variable, response = self._variable({**current, **(request.json or {})}, key)
        if variable is not None:
            del variables[self.variable_id(key, current["environment_scope"])]
            variables[self.variable_id(key, variable["environment_scope"])] = variable
        return response

    def _list_protected_environments(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        return 200, list(self.state.protected_environments[found["id"]].values())

    def _post_protected_environment(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        name = data.get("name", "")
        if name not in self.state.environments[found["id"]]:
            return 404, {"message": "404 Environment Not Found"}
        protected = self.state.protected_environments[found["id"]]
        if name in protected:
            return 409, {"message": "Protected environment already exists"}
        protected[name] = {
            "name": name,
            "deploy_access_levels": list(data.get("deploy_access_levels") or []),
        }
        return 201, protected[name]

    def _list_access_tokens(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        return 200, [
            {k: v for k, v in t.items() if k != "token"}
            for t in self.state.access_tokens[found["id"]]
        ]

    def _post_access_token(self, request: RecordedRequest, project: str) -> Response:
        """Project access tokens: a name, scopes and an expiry date are required."""
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        for required in ("name", "scopes", "expires_at"):
            if not data.get(required):
                return 400, {"error": f"{required} is missing"}
        tokens = self.state.access_tokens[found["id"]]
        token = {
            "id": next(self._ids),
            "name": data["name"],
            "scopes": list(data["scopes"]),
            "access_level": int(data.get("access_level", 40)),
            "expires_at": data["expires_at"],
            "active": True,
            "revoked": False,
            "token": f"glpat-project{len(tokens) + 1:04d}-Rep0rtT0ken",
        }
        tokens.append(token)
        return 201, token

    def _list_deploy_tokens(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        return 200, [
            {k: v for k, v in t.items() if k != "token"}
            for t in self.state.deploy_tokens[found["id"]]
        ]

    def _post_deploy_token(self, request: RecordedRequest, project: str) -> Response:
        """Project deploy tokens: a name and at least one known scope are required."""
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        scopes = list(data.get("scopes") or [])
        known = {
            "read_repository",
            "read_registry",
            "write_registry",
            "read_package_registry",
            "write_package_registry",
        }
        if not data.get("name"):
            return 400, {"error": "name is missing"}
        if not scopes or not set(scopes) <= known:
            return 400, {"message": {"scopes": ["can't be blank or unknown"]}}
        tokens = self.state.deploy_tokens[found["id"]]
        token = {
            "id": next(self._ids),
            "name": data["name"],
            "username": data.get("username") or f"gitlab+deploy-token-{len(tokens) + 1}",
            "expires_at": data.get("expires_at"),
            "scopes": scopes,
            "revoked": False,
            "expired": False,
            "token": f"gldt-fake{len(tokens) + 1:04d}-Depl0yT0ken",
        }
        tokens.append(token)
        return 201, token

    def _list_environments(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        environments: Iterable[dict[str, Any]] = self.state.environments[found["id"]].values()
        if "name" in request.query:
            environments = [e for e in environments if e["name"] == request.query["name"][0]]
        return 200, list(environments)

    def _post_environment(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        name = data.get("name", "")
        environments = self.state.environments[found["id"]]
        if name in environments:
            return 400, {"message": {"name": ["has already been taken"]}}
        environments[name] = {
            "id": next(self._ids),
            "name": name,
            "slug": name.lower().replace(" ", "-"),
            "external_url": data.get("external_url"),
            "tier": data.get("tier", "other"),
            "state": "available",
        }
        return 201, environments[name]

    def _list_issues(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        return (200, list(self.state.issues[found["id"]])) if found else missing

    def _post_issue(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        if not data.get("title"):
            return 400, {"error": "title is missing"}
        issues = self.state.issues[found["id"]]
        labels = data.get("labels") or []
        issue = {
            "id": next(self._ids),
            "iid": len(issues) + 1,
            "project_id": found["id"],
            "title": data["title"],
            "description": data.get("description"),
            "labels": labels.split(",") if isinstance(labels, str) else list(labels),
            "state": "opened",
            "web_url": f"{found['web_url']}/-/issues/{len(issues) + 1}",
        }
        issues.append(issue)
        return 201, issue

    # ---- merge requests (what python-gitlab's ProjectMergeRequestManager calls) -----------

    @staticmethod
    def _draft(title: str) -> bool:
        return title.lower().startswith(("draft:", "[draft]", "(draft)"))

    def _list_merge_requests(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        mrs: Iterable[dict[str, Any]] = self.state.merge_requests[found["id"]]
        for key in ("source_branch", "target_branch", "state"):
            if key in request.query and not (key == "state" and request.query[key][0] == "all"):
                mrs = [m for m in mrs if m[key] == request.query[key][0]]
        return 200, list(mrs)

    def _post_merge_request(self, request: RecordedRequest, project: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        data = request.json or {}
        for key in ("source_branch", "target_branch", "title"):
            if not data.get(key):
                return 400, {"error": f"{key} is missing"}
        mrs = self.state.merge_requests[found["id"]]
        for other in mrs:
            if (
                other["state"] == "opened"
                and other["source_branch"] == data["source_branch"]
                and other["target_branch"] == data["target_branch"]
            ):
                return 409, {
                    "message": [
                        "Another open merge request already exists for this source branch: "
                        f"!{other['iid']}"
                    ]
                }
        labels = data.get("labels") or []
        iid = len(mrs) + 1
        mr = {
            "id": next(self._ids),
            "iid": iid,
            "project_id": found["id"],
            "title": data["title"],
            "description": data.get("description") or "",
            "source_branch": data["source_branch"],
            "target_branch": data["target_branch"],
            "labels": labels.split(",") if isinstance(labels, str) else list(labels),
            "state": "opened",
            "draft": self._draft(data["title"]),
            "work_in_progress": self._draft(data["title"]),
            "force_remove_source_branch": bool(data.get("remove_source_branch", False)),
            "web_url": f"{found['web_url']}/-/merge_requests/{iid}",
        }
        mrs.append(mr)
        return 201, mr

    def _merge_request(self, project: str, iid: str) -> tuple[dict[str, Any] | None, Response]:
        found, missing = self._with_project(project)
        if not found:
            return None, missing
        for mr in self.state.merge_requests[found["id"]]:
            if str(mr["iid"]) == iid:
                return mr, (200, mr)
        return None, (404, {"message": "404 Not found"})

    def _get_merge_request(self, request: RecordedRequest, project: str, iid: str) -> Response:
        return self._merge_request(project, iid)[1]

    def _put_merge_request(self, request: RecordedRequest, project: str, iid: str) -> Response:
        mr, response = self._merge_request(project, iid)
        if mr is None:
            return response
        data = request.json or {}
        for key in ("title", "description", "target_branch"):
            if key in data:
                mr[key] = data[key]
        if "labels" in data:
            labels = data["labels"]
            mr["labels"] = labels.split(",") if isinstance(labels, str) else list(labels)
        if data.get("state_event") == "close":
            mr["state"] = "closed"
        mr["draft"] = mr["work_in_progress"] = self._draft(mr["title"])
        return 200, mr

    def _post_issue_note(self, request: RecordedRequest, project: str, iid: str) -> Response:
        found, missing = self._with_project(project)
        if not found:
            return missing
        if not any(str(i["iid"]) == iid for i in self.state.issues[found["id"]]):
            return 404, {"message": "404 Issue Not Found"}
        notes = self.state.issue_notes[found["id"]]
        body = (request.json or {}).get("body")
        if not body:
            return 400, {"error": "body is missing"}
        note = {"id": next(self._ids), "body": body, "issue_iid": int(iid)}
        notes.append(note)
        return 201, note
