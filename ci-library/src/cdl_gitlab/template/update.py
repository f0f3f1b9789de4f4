"""``cdl template update``: bring a rendered project to the newest template release through
a merge request.

1. ``copier check-update`` (the template's git tags, PEP 440) decides whether a newer
   release ``V`` exists.
2. On a new branch ``cdl-update/V`` from the target branch (``dev`` by default):
   ``copier update --trust --defaults --vcs-ref V`` (a CI library version pinned to an
   older release moves to ``V`` with it), commit, push. If the branch already exists on the
   remote it is kept as it is (it may hold someone's conflict resolution) and only its merge
   request is refreshed.
3. One open merge request per branch, created or updated through python-gitlab: the
   description holds the CHANGELOG sections of the versions crossed; leftover conflicts make
   it a draft that names the files.

Git pushes to the project with the token of a project access token from a CI/CD variable,
sent as an HTTP header through git's environment (never in a URL, an argument or
``.git/config``). The branch is always ``cdl-update/<version>``: it never pushes to the
target branch, ``dev`` or ``main``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdl_gitlab.errors import CDLError
from cdl_gitlab.template.changelog import Section, sections_between
from cdl_gitlab.template.conflicts import find_conflicts
from cdl_gitlab.template.merge_request import UpdateNote, upsert_merge_request

BRANCH_PREFIX = "cdl-update/"
ANSWERS_FILE = ".copier-answers.yml"
PROTECTED = frozenset({"dev", "main", "master"})
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")
_IDENTITY = {
    "GIT_AUTHOR_NAME": "CDL template update",
    "GIT_AUTHOR_EMAIL": "cdl-template-update@noreply.invalid",
    "GIT_COMMITTER_NAME": "CDL template update",
    "GIT_COMMITTER_EMAIL": "cdl-template-update@noreply.invalid",
}


class TemplateUpdateError(CDLError):
    """The update cannot go on (the message says why and what to do)."""


@dataclass
class UpdateOptions:
    project_dir: Path
    gitlab_url: str  # GitLab base URL for the API (python-gitlab appends /api/v4)
    project: str  # project id or full path
    push_url: str  # the project's git URL, without credentials
    token: str  # project access token (api, write_repository)
    target_branch: str = "dev"
    changelog_path: str = "ci-library/CHANGELOG.md"
    pipeline_url: str | None = None


@dataclass
class UpdateResult:
    action: str  # "up-to-date" | "created" | "updated"
    current: str
    latest: str
    branch: str | None = None
    pushed: bool = False
    conflicts: list[str] = field(default_factory=list)
    merge_request: int | None = None
    web_url: str | None = None

    def summary(self) -> str:
        if self.action == "up-to-date":
            return f"template up to date at {self.current} (latest release {self.latest})"
        state = f"draft, conflicts in {', '.join(self.conflicts)}" if self.conflicts else "ready"
        push = "pushed" if self.pushed else "kept (already on the remote)"
        return (
            f"template {self.current} -> {self.latest}: branch {self.branch} {push}; "
            f"merge request !{self.merge_request} {self.action} ({state})"
            + (f" {self.web_url}" if self.web_url else "")
        )


def options_from_env(
    project_dir: Path, token_variable: str, target_branch: str, changelog_path: str
) -> UpdateOptions:
    """Options from GitLab CI's predefined variables (``CI_API_V4_URL``, ``CI_SERVER_URL``,
    ``CI_PROJECT_PATH``) and the token in ``$<token_variable>``."""
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", token_variable):
        raise TemplateUpdateError(
            f"token variable {token_variable!r}: give the NAME of a CI/CD variable, like "
            "CDL_TEMPLATE_UPDATE_TOKEN, never the token itself"
        )
    token = os.environ.get(token_variable, "")
    if not token:
        raise TemplateUpdateError(
            f"${token_variable} is not set: create a project access token (role Developer, "
            "scopes api and write_repository) and store it as the masked CI/CD variable "
            f"{token_variable} (never a personal token)"
        )
    api = os.environ.get("CI_API_V4_URL", "")
    server = os.environ.get("CI_SERVER_URL", "")
    project = os.environ.get("CI_PROJECT_PATH", "")
    missing = [
        name
        for name, value in (("CI_SERVER_URL", server), ("CI_PROJECT_PATH", project))
        if not value
    ]
    if missing:
        raise TemplateUpdateError(
            f"{', '.join(missing)} not set: `cdl template update` runs in a GitLab CI job"
        )
    # https://<host>:<port>/<path>.git, from GitLab's CI_SERVER_* parts when it gives them
    protocol, host = os.environ.get("CI_SERVER_PROTOCOL"), os.environ.get("CI_SERVER_HOST")
    port = os.environ.get("CI_SERVER_PORT")
    base = f"{protocol}://{host}:{port}" if protocol and host and port else server.rstrip("/")
    return UpdateOptions(
        project_dir=project_dir,
        gitlab_url=api.removesuffix("/").removesuffix("/api/v4") if api else server,
        project=project,
        push_url=f"{base}/{project}.git",
        token=token,
        target_branch=target_branch,
        changelog_path=changelog_path,
        pipeline_url=os.environ.get("CI_PIPELINE_URL"),
    )


# ------------------------------------------------------------------------------ git
def _plain_env() -> dict[str, str]:
    """The environment of git and Copier without credentials (the update's identity when
    none is set)."""
    return {**_IDENTITY, **os.environ, "GIT_TERMINAL_PROMPT": "0"}


def _auth_env(token: str, url: str) -> dict[str, str]:
    """git's environment with the token as an HTTP Basic header for ``url`` only (any user
    name works with a GitLab project access token); the template's host never sees it."""
    env = _plain_env()
    credentials = base64.b64encode(f"cdl-template-update:{token}".encode()).decode()
    index = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env[f"GIT_CONFIG_KEY_{index}"] = f"http.{url}.extraHeader"
    env[f"GIT_CONFIG_VALUE_{index}"] = f"Authorization: Basic {credentials}"
    env["GIT_CONFIG_COUNT"] = str(index + 1)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise TemplateUpdateError(f"{what} failed (exit {result.returncode}): {detail}")
    return result.stdout


def _git(cwd: Path, env: dict[str, str], *args: str) -> str:
    return _run(["git", *args], cwd, env, f"git {args[0]}")


# --------------------------------------------------------------------------- copier
def read_answers(project_dir: Path) -> dict[str, Any]:
    path = project_dir / ANSWERS_FILE
    if not path.is_file():
        raise TemplateUpdateError(
            f"{path} not found: the project was not rendered by Copier, nothing to update"
        )
    answers = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not answers.get("_src_path") or not answers.get("_commit"):
        raise TemplateUpdateError(
            f"{path}: needs _src_path and _commit (the template and the release it was "
            "rendered from)"
        )
    return answers


def check_update(project_dir: Path, env: dict[str, str]) -> tuple[bool, str, str]:
    """``copier check-update --output-format json``: (update available, current, latest)."""
    out = _run(
        [sys.executable, "-m", "copier", "check-update", "--output-format", "json"],
        project_dir,
        env,
        "copier check-update",
    )
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            return bool(data["update_available"]), data["current_version"], data["latest_version"]
    raise TemplateUpdateError(f"copier check-update printed no JSON: {out.strip()[-500:]}")


def copier_update(
    project_dir: Path, version: str, answers: dict[str, Any], env: dict[str, str]
) -> None:
    cmd = [sys.executable, "-m", "copier", "update", "--trust", "--defaults", "--quiet"]
    library = str(answers.get("ci_library_version", ""))
    if _RELEASE.match(library) and _RELEASE.match(version) and _older(library, version):
        cmd += ["--data", f"ci_library_version={version}"]
    cmd += ["--vcs-ref", version]
    _run(cmd, project_dir, env, f"copier update to {version}")


def _older(a: str, b: str) -> bool:
    return tuple(map(int, a.split("."))) < tuple(map(int, b.split(".")))


def template_changelog(
    src: str, project_dir: Path, version: str, current: str, path: str, env: dict[str, str]
) -> list[Section] | None:
    """The CHANGELOG sections of ``current < v <= version`` from the template at ``version``
    (None: the template has no such file)."""
    if "://" not in src and not src.startswith("git@") and not Path(src).is_absolute():
        src = str((project_dir / src).resolve())
    with tempfile.TemporaryDirectory(prefix="cdl-template-") as scratch:
        _run(
            [
                "git",
                "clone",
                "--quiet",
                "--no-checkout",
                "--depth",
                "1",
                "--branch",
                version,
                src,
                scratch,
            ],
            project_dir,
            env,
            f"git clone of the template at {version}",
        )
        shown = subprocess.run(
            ["git", "show", f"HEAD:{path}"], cwd=scratch, capture_output=True, text=True
        )
    if shown.returncode != 0:
        return None
    return sections_between(shown.stdout, current, version)


# ------------------------------------------------------------------------------ flow
def update(options: UpdateOptions) -> UpdateResult:
    """Check, update, push and open (or refresh) the merge request; see the module doc."""
    root = options.project_dir
    env = _plain_env()  # Copier and the template's git: no credentials
    auth = _auth_env(options.token, options.push_url)  # the project's git only
    answers = read_answers(root)
    available, current, latest = check_update(root, env)
    if not available:
        return UpdateResult("up-to-date", current, latest)
    branch = f"{BRANCH_PREFIX}{latest}"
    if branch in PROTECTED | {options.target_branch}:
        raise TemplateUpdateError(f"refusing to push to {branch}")

    remote_has_branch = bool(
        _git(root, auth, "ls-remote", "--heads", options.push_url, f"refs/heads/{branch}").strip()
    )
    pushed = False
    if remote_has_branch:
        _git(root, auth, "fetch", "--quiet", options.push_url, f"refs/heads/{branch}")
        _git(root, env, "checkout", "--quiet", "-B", branch, "FETCH_HEAD")
    else:
        _git(
            root, auth, "fetch", "--quiet", options.push_url, f"refs/heads/{options.target_branch}"
        )
        _git(root, env, "checkout", "--quiet", "-B", branch, "FETCH_HEAD")
        copier_update(root, latest, read_answers(root), env)
        _git(root, env, "add", "--all")
        message = (
            f"Update the CDL template from {current} to {latest}\n\n"
            f"copier update --trust --defaults --vcs-ref {latest}\n"
        )
        _git(root, env, "commit", "--quiet", "--allow-empty", "-m", message)
        _git(root, auth, "push", "--quiet", options.push_url, f"HEAD:refs/heads/{branch}")
        pushed = True

    conflicts = find_conflicts(root)
    changelog = template_changelog(
        str(answers["_src_path"]), root, latest, current, options.changelog_path, env
    )
    note = UpdateNote(
        current, latest, conflicts, changelog, options.changelog_path, options.pipeline_url
    )

    import gitlab

    client = gitlab.Gitlab(options.gitlab_url, private_token=options.token, timeout=30)
    project = client.projects.get(options.project, lazy=True)
    action, mr = upsert_merge_request(project, branch, options.target_branch, note)
    return UpdateResult(
        action,
        current,
        latest,
        branch,
        pushed,
        [c.path for c in conflicts],
        getattr(mr, "iid", None),
        getattr(mr, "web_url", None),
    )
