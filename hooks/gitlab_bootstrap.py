"""Optional Copier task: create the rendered project on GitLab and configure it.

Steps (each logged as one line): connect, find or create the project in its
namespace, push `main` and `dev`, protect `main` (push and merge: maintainers) and
`dev` (developers), make `dev` the default branch, create CI/CD variables, create
the `staging` and `production` environments, protect `production` (deploys:
maintainers), create the project access token that posts merge-request notes and
issues, and the deploy token the clusters pull the project's images with. Every step
is idempotent, so a failed run can simply be repeated. Nothing
local is ever deleted.

CI/CD variables are protected (only pipelines of protected branches, `main` and
`dev`, see them) unless named in `--unprotected`, and environment-scoped when
given as `NAME@environment` (the value then comes from the environment variable
`NAME_<ENVIRONMENT>`, e.g. `KUBECONFIG_B64@production` from
`KUBECONFIG_B64_PRODUCTION`): production credentials reach only jobs of the
`production` environment. Values are masked: plainly when GitLab's classic rule
allows it, as masked *raw* (never expanded) variables when they hold other
characters such as `$`, and refused with the reason when GitLab cannot mask them
at all (shorter than 8 characters, whitespace, non-ASCII).

The merge-request notes and the monitoring issues never use the bootstrap's own
token: the bootstrap creates a project access token with the Reporter role (the
least role that can comment on merge requests and file and label issues) and
`api` scope, and stores it as the masked variable `CDL_REPORT_TOKEN`.

The clusters pull the project's registry images with the project deploy token named
`gitlab-deploy-token` (scope `read_registry` only), which GitLab hands to every CI job as
`CI_DEPLOY_USER` / `CI_DEPLOY_PASSWORD`; `cdl` makes the image pull Secrets of the serving,
trial and Pachyderm namespaces from it. The bootstrap creates it when no active one exists.

The token is read from an environment variable (`--token-env`, default
GITLAB_TOKEN), never from a flag; it is sent to git as an HTTP header through
GIT_CONFIG_* environment variables, so it appears neither in .git/config, nor in
the command line, nor in the output.

Runs with the Python that runs Copier: stdlib + python-gitlab only, and
python-gitlab is imported lazily so that a missing install is reported, not a
crash. Copier deletes the destination when a task fails, so the Copier task
calls this script with `--copier` (see `run_from_copier`), which never fails and
prints the command that retries the bootstrap.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PREFIX = "[gitlab-bootstrap]"
BRANCHES = ("main", "dev")
DEFAULT_BRANCH = "dev"
ENVIRONMENTS = ("staging", "production")
PROTECTED_ENVIRONMENT = "production"
REPORTER_ACCESS = 20  # gitlab.const.AccessLevel.REPORTER
DEVELOPER_ACCESS = 30  # gitlab.const.AccessLevel.DEVELOPER
MAINTAINER_ACCESS = 40  # gitlab.const.AccessLevel.MAINTAINER
# Who may push and merge: production only by maintainers, dev by developers.
PROTECTED_BRANCHES = {"main": MAINTAINER_ACCESS, "dev": DEVELOPER_ACCESS}
# GitLab's rule for masked values (the strictest form, valid on every version).
MASKABLE_VALUE = re.compile(r"[A-Za-z0-9_+=/@:.~-]{8,}")
# Masked raw variables (never expanded) may hold any printable ASCII but whitespace.
MASKABLE_RAW_VALUE = re.compile(r"[!-~]{8,}")
VARIABLE_NAME = re.compile(r"[A-Za-z0-9_]{1,255}")
VARIABLE_SPEC = re.compile(r"(?P<key>[A-Za-z0-9_]{1,255})(?:@(?P<scope>[a-z][a-z0-9_-]*))?")
REPORT_TOKEN_NAME = "cdl-report"
REPORT_TOKEN_VARIABLE = "CDL_REPORT_TOKEN"
REPORT_TOKEN_DAYS = 365  # GitLab's longest access-token lifetime by default
# GitLab passes the project deploy token of this name to every job (CI_DEPLOY_USER/PASSWORD)
DEPLOY_TOKEN_NAME = "gitlab-deploy-token"
DEPLOY_TOKEN_SCOPES = ["read_registry"]
HTTP_HINTS = {
    401: "the token is invalid, expired or revoked",
    403: "the token lacks the 'api' scope or its user lacks the permission (Maintainer role, "
    "or the right to create projects in the namespace)",
    404: "not found, or not visible to the token's user",
}


class BootstrapError(Exception):
    """A step failed: names the step, the HTTP status, GitLab's message and a hint."""

    def __init__(self, step: str, detail: str, status: int | None = None, hint: str = "") -> None:
        self.step = step
        self.status = status
        self.detail = detail
        self.hint = hint
        text = f"GitLab bootstrap failed at '{step}'"
        text += f" (HTTP {status}: {detail})" if status else f": {detail}"
        super().__init__(f"{text}: {hint}" if hint else text)


class GitlabNotInstalledError(BootstrapError):
    """python-gitlab cannot be imported in this Python."""


@dataclass
class Result:
    """What a bootstrap run did."""

    project_id: int
    web_url: str
    repo_url: str
    created: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _log(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def _warn(message: str) -> None:
    print(f"{PREFIX} warning: {message}", file=sys.stderr, flush=True)


def _error(message: str) -> None:
    print(f"{PREFIX} error: {message}", file=sys.stderr, flush=True)


def _import_gitlab() -> Any:
    try:
        import gitlab  # lazy on purpose: optional dependency
    except ImportError as exc:
        raise GitlabNotInstalledError(
            "import python-gitlab",
            f"python-gitlab is not installed in {sys.executable} ({exc}); "
            f"install it with: {shlex.quote(sys.executable)} -m pip install python-gitlab "
            "(if Copier runs from pipx: pipx inject copier python-gitlab)",
        ) from exc
    return gitlab


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _gitlab_message(exc: BaseException) -> tuple[int | None, str, str]:
    """HTTP status, GitLab's own message and a hint for a python-gitlab/requests exception."""
    status = getattr(exc, "response_code", None)
    message: Any = getattr(exc, "error_message", None) or str(exc) or type(exc).__name__
    if isinstance(message, dict):  # validation errors: {"name": ["has already been taken"]}
        message = "; ".join(f"{key}: {value}" for key, value in message.items())
    message = str(message)
    if status is None and exc.__class__.__module__.startswith("requests"):
        message = f"cannot reach GitLab: {message}"
    return status, message, HTTP_HINTS.get(status or 0, "")


@contextmanager
def _step(name: str, secrets: Sequence[str]) -> Iterator[None]:
    """Turn any exception inside a step into a BootstrapError naming the step."""
    try:
        yield
    except BootstrapError:
        raise
    except Exception as exc:
        status, message, hint = _gitlab_message(exc)
        raise BootstrapError(name, _redact(message, secrets), status, hint) from exc


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "response_code", None) == 404


def _clean_url(url: str) -> str:
    """The URL without user info (never store credentials in a remote)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _git(project_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=project_dir, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, ["git", *args], result.stdout, result.stderr
        )
    return result.stdout.strip()


def _git_auth_env(token: str) -> dict[str, str]:
    """Environment passing the token as an HTTP header, outside argv and .git/config.

    GitLab accepts a personal, project or group access token over git HTTPS as the
    password of Basic auth with the user name `oauth2`.
    """
    basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
    env = dict(os.environ)
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env.update(
        {
            "GIT_CONFIG_COUNT": str(count + 1),
            f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
            f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}",
            "GIT_TERMINAL_PROMPT": "0",  # fail instead of asking for a password
        }
    )
    return env


def _push(project_dir: Path, repo_url: str, token: str, result: Result) -> None:
    """Add `origin` (clean URL) if absent, then push `main` and `dev` to the project."""
    secrets = [token, base64.b64encode(f"oauth2:{token}".encode()).decode()]
    step = "push"
    with _step(step, secrets):
        try:
            remotes = _git(project_dir, "remote").split()
            target = "origin"
            if "origin" not in remotes:
                _git(project_dir, "remote", "add", "origin", repo_url)
                _log(f"remote 'origin' added: {repo_url}")
            else:
                current = _git(project_dir, "remote", "get-url", "origin")
                if current != repo_url:
                    target = repo_url
                    message = (
                        f"remote 'origin' already points to {current}, left unchanged; "
                        f"pushing to {repo_url} directly"
                    )
                    _warn(message)
                    result.warnings.append(message)
            upstream = ["--set-upstream"] if target == "origin" else []
            _git(
                project_dir,
                "push",
                "--quiet",
                *upstream,
                target,
                *BRANCHES,
                env=_git_auth_env(token),
            )
        except FileNotFoundError as exc:
            raise BootstrapError(step, "git is not installed") from exc
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip() or f"exit code {exc.returncode}"
            raise BootstrapError(
                step, f"git {' '.join(exc.cmd[1:3])} failed: {_redact(detail, secrets)}"
            ) from exc
    _log(f"pushed {' and '.join(BRANCHES)} to {repo_url}")


def _access_levels(levels: Any) -> set[int]:
    return {int(level.get("access_level", -1)) for level in levels or [] if isinstance(level, dict)}


def read_token(token_env: str) -> str:
    """The token from the environment variable `token_env`, or a BootstrapError naming it."""
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise BootstrapError(
            "read token",
            f"environment variable {token_env} is not set or empty; set it to a GitLab personal "
            f"(or group) access token with the 'api' and 'write_repository' scopes, e.g. "
            f"`export {token_env}=glpat-...`, and run again",
        )
    return token


def bootstrap(
    project_dir: Path,
    gitlab_url: str,
    project_path: str,
    token: str,
    variables: Sequence[str] = (),
    description: str = "",
    visibility: str = "private",
    allow_unmasked: bool = False,
    environ: dict[str, str] | None = None,
    unprotected: Sequence[str] = (),
) -> Result:
    """Create or reuse `project_path` on `gitlab_url` and configure it; see the module doc.

    Values of `variables` are read from `environ` (default: os.environ). Raises
    BootstrapError on the first failing step; problems with single variables are
    collected in `Result.errors` / `Result.warnings` and the run goes on.
    """
    environ = dict(os.environ) if environ is None else environ
    gitlab = _import_gitlab()
    project_dir = Path(project_dir).resolve()
    namespace_path, _, name = project_path.strip("/").rpartition("/")
    if not namespace_path or not name:
        raise BootstrapError(
            "check arguments", f"--project-path must be namespace/name, got {project_path!r}"
        )
    if not (project_dir / ".git").exists():
        raise BootstrapError("check arguments", f"{project_dir} is not a git repository")
    secrets = [token]

    with _step("connect", secrets):
        gl = gitlab.Gitlab(gitlab_url.rstrip("/"), private_token=token, timeout=30)
        gl.auth()
        username = getattr(gl.user, "username", "?")
    _log(f"connected to {gitlab_url} as {username}")

    created = False
    with _step("find project", secrets):
        try:
            project = gl.projects.get(project_path)
        except gitlab.exceptions.GitlabGetError as exc:
            if not _is_not_found(exc):
                raise
            project = None
    if project is not None:
        _log(f"project {project_path} exists (id {project.id}): reused")
    else:
        with _step("find namespace", secrets):
            namespace = gl.namespaces.get(namespace_path)
        with _step("create project", secrets):
            project = gl.projects.create(
                {
                    "name": name,
                    "path": name,
                    "namespace_id": namespace.id,
                    "description": description,
                    "visibility": visibility,
                    "initialize_with_readme": False,
                }
            )
        created = True
        _log(
            f"project {project_path} created (id {project.id}) in namespace "
            f"{namespace_path} (id {namespace.id})"
        )
    repo_url = _clean_url(project.http_url_to_repo)
    result = Result(project.id, getattr(project, "web_url", ""), repo_url, created)

    _push(project_dir, repo_url, token, result)

    for branch, level in PROTECTED_BRANCHES.items():
        _protect_branch(gitlab, project, branch, level, secrets)

    with _step("set default branch", secrets):
        if getattr(project, "default_branch", None) == DEFAULT_BRANCH:
            _log(f"default branch already {DEFAULT_BRANCH}")
        else:
            gl.projects.update(project.id, {"default_branch": DEFAULT_BRANCH})
            _log(f"default branch set to {DEFAULT_BRANCH}")

    _create_variables(gl, project, variables, unprotected, environ, allow_unmasked, result, secrets)

    with _step("create environments", secrets):
        existing = {env.name for env in project.environments.list(get_all=True)}
        for env_name in ENVIRONMENTS:
            if env_name in existing:
                _log(f"environment {env_name} exists")
            else:
                project.environments.create({"name": env_name, "tier": env_name})
                _log(f"environment {env_name} created")

    _protect_environment(gitlab, project, result, secrets)
    _report_token(gitlab, gl, project, result, secrets)
    _deploy_token(gitlab, project, result, secrets)
    return result


def _warn_unavailable(exc: Exception, result: Result, message: str) -> None:
    """A feature this GitLab, tier or role does not offer (HTTP 403/404): ``message`` as a
    warning and the run goes on; any other failure is raised again."""
    if getattr(exc, "response_code", None) not in (403, 404):
        raise exc
    _warn(message)
    result.warnings.append(message)


def _deploy_token(gitlab: Any, project: Any, result: Result, secrets: list[str]) -> None:
    """The deploy token GitLab passes to every job as CI_DEPLOY_USER / CI_DEPLOY_PASSWORD
    (read_registry: pulling the project's images, nothing else). Kept while an active one
    exists; its value is never stored anywhere else."""
    with _step("create deploy token", secrets):
        active = [
            token
            for token in project.deploytokens.list(get_all=True)
            if token.name == DEPLOY_TOKEN_NAME
            and not getattr(token, "revoked", False)
            and not getattr(token, "expired", False)
        ]
        if active:
            _log(f"deploy token {DEPLOY_TOKEN_NAME} exists")
            return
        try:
            token = project.deploytokens.create(
                {"name": DEPLOY_TOKEN_NAME, "scopes": DEPLOY_TOKEN_SCOPES}
            )
        except gitlab.exceptions.GitlabCreateError as exc:
            message = (
                f"the deploy token {DEPLOY_TOKEN_NAME} could not be created (the token's user "
                "needs the Maintainer role): create it by hand (Settings > Repository > Deploy "
                f"tokens, name {DEPLOY_TOKEN_NAME}, scope read_registry), or the clusters' image "
                "pull Secrets must be created by hand"
            )
            _warn_unavailable(exc, result, message)
            return
        secrets.append(getattr(token, "token", ""))
        _log(
            f"deploy token {DEPLOY_TOKEN_NAME} created (read_registry): GitLab passes it to "
            "every job as CI_DEPLOY_USER / CI_DEPLOY_PASSWORD"
        )


def _protect_branch(gitlab: Any, project: Any, branch: str, level: int, secrets: list[str]) -> None:
    """Protect ``branch``: push and merge from access ``level`` up (replacing other rules)."""
    who = "maintainers" if level == MAINTAINER_ACCESS else "developers"
    with _step(f"protect {branch}", secrets):
        try:
            protected = project.protectedbranches.get(branch)
        except gitlab.exceptions.GitlabGetError as exc:
            if not _is_not_found(exc):
                raise
            protected = None
        wanted = {level}
        if protected is not None and (
            _access_levels(getattr(protected, "push_access_levels", None)) == wanted
            and _access_levels(getattr(protected, "merge_access_levels", None)) == wanted
        ):
            _log(f"{branch} already protected (push/merge: {who})")
            return
        if protected is not None:  # e.g. GitLab's default protection lets developers merge
            project.protectedbranches.delete(branch)
        project.protectedbranches.create(
            {"name": branch, "push_access_level": level, "merge_access_level": level}
        )
        _log(f"{branch} protected (push/merge: {who})")


def _protect_environment(gitlab: Any, project: Any, result: Result, secrets: list[str]) -> None:
    """Only maintainers may deploy to production (the manual gate). Protected environments
    are a GitLab Premium feature: without it this is a warning, and the gate rests on the
    protected production branch."""
    name = PROTECTED_ENVIRONMENT
    with _step(f"protect environment {name}", secrets):
        try:
            protected = {env.name for env in project.protected_environments.list(get_all=True)}
        except gitlab.exceptions.GitlabListError as exc:
            message = (
                f"environment {name} not protected: this GitLab offers no protected "
                "environments (GitLab Premium); only maintainers can push or merge to main, "
                "the branch that deploys to production"
            )
            _warn_unavailable(exc, result, message)
            return
        if name in protected:
            _log(f"environment {name} already protected")
            return
        project.protected_environments.create(
            {"name": name, "deploy_access_levels": [{"access_level": MAINTAINER_ACCESS}]}
        )
        _log(f"environment {name} protected (deploy: maintainers)")


def _report_token(gitlab: Any, gl: Any, project: Any, result: Result, secrets: list[str]) -> None:
    """The project access token (Reporter, api scope) that posts merge-request notes and
    files monitoring issues, in the masked variable CDL_REPORT_TOKEN. It is not protected:
    merge-request pipelines of unprotected branches post the notes. Kept while the token
    and the variable both exist; otherwise a new token is created."""
    with _step("create report token", secrets):
        tokens = [
            token
            for token in project.access_tokens.list(get_all=True)
            if token.name == REPORT_TOKEN_NAME
            and getattr(token, "active", True)
            and not getattr(token, "revoked", False)
        ]
        variables = {var.key for var in project.variables.list(get_all=True)}
        if tokens and REPORT_TOKEN_VARIABLE in variables:
            _log(f"report token {REPORT_TOKEN_NAME} and variable {REPORT_TOKEN_VARIABLE} exist")
            return
        expires = datetime.date.today() + datetime.timedelta(days=REPORT_TOKEN_DAYS)
        try:
            token = project.access_tokens.create(
                {
                    "name": REPORT_TOKEN_NAME,
                    "scopes": ["api"],
                    "access_level": REPORTER_ACCESS,
                    "expires_at": expires.isoformat(),
                }
            )
        except gitlab.exceptions.GitlabCreateError as exc:
            message = (
                "no project access token could be created (GitLab.com Free offers none): "
                f"create one with the Reporter role and api scope by hand and store it as the "
                f"masked CI/CD variable {REPORT_TOKEN_VARIABLE}"
            )
            _warn_unavailable(exc, result, message)
            return
        secrets.append(token.token)
        data = {
            "key": REPORT_TOKEN_VARIABLE,
            "value": token.token,
            "masked": True,
            "raw": MASKABLE_VALUE.fullmatch(token.token) is None,
            "protected": False,
            "environment_scope": "*",
        }
        if REPORT_TOKEN_VARIABLE in variables:
            _put_variable(gl, project, data)
        else:
            project.variables.create(data)
        _log(
            f"report token {REPORT_TOKEN_NAME} created (Reporter, api, expires {expires}) and "
            f"stored as {REPORT_TOKEN_VARIABLE} (masked, unprotected: merge-request pipelines "
            "post notes)"
        )


@dataclass(frozen=True)
class _Variable:
    """One requested CI/CD variable: its key, environment scope and where its value is."""

    key: str
    scope: str
    source: str

    @property
    def label(self) -> str:
        return self.key if self.scope == "*" else f"{self.key}@{self.scope}"


def parse_variables(names: Sequence[str]) -> tuple[list[_Variable], list[str]]:
    """``NAME`` (all environments, value from $NAME) or ``NAME@env`` (value from
    $NAME_ENV); returns the variables and the entries that are neither."""
    found: dict[tuple[str, str], _Variable] = {}
    invalid = []
    for entry in dict.fromkeys(n.strip() for n in names):
        if not entry:
            continue
        match = VARIABLE_SPEC.fullmatch(entry)
        if not match:
            invalid.append(entry)
            continue
        key, scope = match["key"], match["scope"] or "*"
        source = key if scope == "*" else f"{key}_{scope.upper().replace('-', '_')}"
        found[(key, scope)] = _Variable(key, scope, source)
    return list(found.values()), invalid


def masking(value: str) -> tuple[bool, bool, str]:
    """``(masked, raw, why not)`` as GitLab can mask ``value``: classic masked, masked raw
    (other printable characters, never expanded), or not at all (with the reason)."""
    if MASKABLE_VALUE.fullmatch(value):
        return True, False, ""
    if MASKABLE_RAW_VALUE.fullmatch(value):
        return True, True, ""
    if len(value) < 8:
        return False, False, "it is shorter than 8 characters"
    if any(ch.isspace() for ch in value):
        return False, False, "it contains whitespace or line breaks (base64-encode it)"
    return False, False, "it contains non-ASCII or control characters"


def _put_variable(gl: Any, project: Any, data: dict[str, Any]) -> None:
    """Update the variable of ``data``'s key and environment scope (the scope filter
    picks one of several same-named variables)."""
    gl.http_put(
        f"/projects/{project.id}/variables/{data['key']}",
        post_data=data,
        query_data={"filter[environment_scope]": data["environment_scope"]},
    )


def _create_variables(
    gl: Any,
    project: Any,
    names: Sequence[str],
    unprotected: Sequence[str],
    environ: dict[str, str],
    allow_unmasked: bool,
    result: Result,
    secrets: list[str],
) -> None:
    """Create (or update) project CI/CD variables from environment variables."""
    wanted, invalid = parse_variables(names)
    if not wanted and not invalid:
        _log("no CI/CD variables requested")
        return
    for name in invalid:
        message = (
            f"variable {name!r}: not a valid CI/CD variable (NAME or NAME@environment, "
            "NAME from A-Z, a-z, 0-9, _); skipped"
        )
        _error(message)
        result.errors.append(message)
    missing = [v for v in wanted if not environ.get(v.source)]
    if missing:
        message = (
            f"no value in the environment for {', '.join(v.source for v in missing)}: not "
            "created (export them and run again)"
        )
        _warn(message)
        result.warnings.append(message)
    todo = [v for v in wanted if v not in missing]
    if not todo:
        return
    secrets.extend(environ[v.source] for v in todo)
    open_to_all = set(unprotected)
    with _step("create CI/CD variables", secrets):
        existing = {
            (var.key, getattr(var, "environment_scope", "*"))
            for var in project.variables.list(get_all=True)
        }
        for variable in todo:
            value = environ[variable.source]
            masked, raw, why = masking(value)
            if not masked:
                why = f"variable {variable.label}: GitLab cannot mask its value: {why}"
                if not allow_unmasked:
                    message = f"{why}; skipped (use --allow-unmasked to create it unmasked)"
                    _error(message)
                    result.errors.append(message)
                    continue
                message = f"{why}; created UNMASKED because of --allow-unmasked"
                _warn(message)
                result.warnings.append(message)
            protected = variable.key not in open_to_all
            data = {
                "key": variable.key,
                "value": value,
                "masked": masked,
                "raw": raw,
                "protected": protected,
                "environment_scope": variable.scope,
            }
            how = (
                f"masked={masked}{' (raw)' if raw else ''}, protected={protected}, "
                f"environment={variable.scope}"
            )
            if (variable.key, variable.scope) in existing:
                _put_variable(gl, project, data)
                _log(f"variable {variable.key} updated ({how})")
            else:
                project.variables.create(data)
                _log(f"variable {variable.key} created ({how})")


def build_parser() -> argparse.ArgumentParser:
    """The command line (the token is never a flag: only the name of its variable)."""
    parser = argparse.ArgumentParser(
        prog="gitlab_bootstrap.py",
        description="Create the rendered project on GitLab: push main and dev, protect them, "
        "default branch dev, protected and scoped CI/CD variables, environments staging and "
        "production, the report token.",
        epilog="As a Copier task, add --copier: the run then never fails (Copier would delete "
        "the rendered project) and prints the command that retries it.",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path("."),
        help="the rendered project, a git repository with main and dev",
    )
    parser.add_argument("--gitlab-url", required=True, help="e.g. https://gitlab.example.com")
    parser.add_argument(
        "--project-path",
        required=True,
        help="namespace/name, e.g. group/news-classifier (namespace must exist)",
    )
    parser.add_argument(
        "--token-env",
        default="GITLAB_TOKEN",
        help="NAME of the environment variable holding the access token",
    )
    parser.add_argument(
        "--variables",
        default="",
        help="comma-separated CI/CD variables: NAME (all environments, value from $NAME) or "
        "NAME@environment (only that environment's jobs, value from $NAME_<ENVIRONMENT>)",
    )
    parser.add_argument(
        "--unprotected",
        default="",
        help="comma-separated names of variables that also pipelines of unprotected branches "
        "(merge requests) must see; all others are protected",
    )
    parser.add_argument(
        "--allow-unmasked",
        action="store_true",
        help="create variables whose values GitLab cannot mask, unmasked",
    )
    parser.add_argument("--description", default="")
    parser.add_argument(
        "--visibility",
        default="private",
        choices=("private", "internal", "public"),
        help="for a newly created project (default: private)",
    )
    return parser


def _run(args: argparse.Namespace) -> Result:
    _import_gitlab()  # first: installing it is the first thing to fix
    token = read_token(args.token_env)
    return bootstrap(
        project_dir=args.project_dir,
        gitlab_url=args.gitlab_url,
        project_path=args.project_path,
        token=token,
        variables=[v for v in args.variables.split(",") if v.strip()],
        description=args.description,
        visibility=args.visibility,
        allow_unmasked=args.allow_unmasked,
        unprotected=[v.strip() for v in args.unprotected.split(",") if v.strip()],
    )


def _report(result: Result) -> int:
    where = result.web_url or result.repo_url
    if result.errors:
        _error(f"finished with {len(result.errors)} error(s) (see above); project: {where}")
        return 1
    _log(f"done: {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 on success, 1 on failure (the message names the step and HTTP status)."""
    args = build_parser().parse_args(argv)
    try:
        return _report(_run(args))
    except BootstrapError as exc:
        _error(str(exc))
        return 1


def _retry_command(argv: Sequence[str], args: argparse.Namespace | None) -> str:
    """The command line that repeats this run, with a script path that outlives Copier.

    Copier clones a git template into a temporary directory that it deletes after the
    copy; then a copy of this script is kept in the project's .git directory (never
    committed, never pushed).
    """
    script = Path(__file__).resolve()
    rest = list(argv)
    if args is not None:
        project_dir = Path(args.project_dir).resolve()
        rest = _with_absolute_project_dir(rest, project_dir)
        if script.is_relative_to(Path(tempfile.gettempdir()).resolve()):
            keep = project_dir / ".git" / script.name
            try:
                shutil.copy2(script, keep)
                script = keep
            except OSError:
                pass
    return shlex.join([sys.executable, str(script), *rest])


def _with_absolute_project_dir(argv: list[str], project_dir: Path) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--project-dir":
            skip = True
            continue
        if arg.startswith("--project-dir="):
            continue
        out.append(arg)
    return ["--project-dir", str(project_dir), *out]


def run_from_copier(argv: Sequence[str] | None = None) -> int:
    """Copier task entry: like main(), but always returns 0 and prints how to retry.

    A failed Copier task makes Copier delete the freshly rendered project, so a
    GitLab problem must never fail the task: the project stays, and the retry
    command is printed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    needs_install = False
    try:
        args = build_parser().parse_args(argv)
        result = _run(args)
        if _report(result) == 0:
            return 0
        failure = "finished with errors"
    except SystemExit as exc:  # argparse: --help, or a usage error it already printed
        if exc.code in (0, None):
            return 0
        failure = "invalid arguments"
    except GitlabNotInstalledError as exc:
        _error(str(exc))
        failure, needs_install = "python-gitlab is not installed", True
    except BootstrapError as exc:
        _error(str(exc))
        failure = f"step '{exc.step}' failed"
    except BaseException as exc:  # even Ctrl-C: a failed task makes Copier delete the project
        failure = f"unexpected {type(exc).__name__}: {exc}"
        _error(failure)
    lines = [
        f"{PREFIX} The project was rendered and its local git repository is intact; "
        f"only the GitLab setup did not complete ({failure}).",
        f"{PREFIX} To retry (every step is idempotent), with "
        f"{args.token_env if args else 'GITLAB_TOKEN'} set in the environment, run:",
    ]
    if needs_install:
        lines.append(f"    {shlex.quote(sys.executable)} -m pip install python-gitlab")
    lines.append(f"    {_retry_command(argv, args)}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 0


def _entry(argv: Sequence[str]) -> int:
    argv = list(argv)
    if "--copier" in argv:
        argv.remove("--copier")
        return run_from_copier(argv)
    return main(argv)


if __name__ == "__main__":
    sys.exit(_entry(sys.argv[1:]))
