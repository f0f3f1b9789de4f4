"""The template-update component under gitlab-ci-local 4.73.0, offline.

A project rendered from release N (a tag) of a snapshot of this template, the template then
tagged N+1 with a CHANGELOG section: a scheduled pipeline with CDL_SCHEDULE=template-update
runs the `template-update` job (shell executor), which pushes `cdl-update/<N+1>` to the
project's bare repository on the fake instance and opens one merge request through
python-gitlab against the fake GitLab API (HTTP boundary). A second run opens none (it updates
the one MR); a conflicting user edit makes the MR a draft naming the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cdl_ci_harness as h
import pytest
import yaml

sys.path.insert(0, str(h.REPO_ROOT / "tests"))
from fakes.gitlab_api import FakeGitLab

pytest.importorskip("gitlab")

TOKEN = "glpat-template-update-token"
N, N1 = "0.2.0", "0.3.0"
BRANCH = f"cdl-update/{N1}"
LINE = "Develop on `dev`; merge requests into `dev` run the pipelines; production is"
NEW_LINE = LINE.replace("`dev`;", "`dev` (updated in 0.3.0);", 1)
# the same line in the template's source (the branch names are answers)
SOURCE_LINE = LINE.replace("`dev`", "`{{ staging_branch }}`")
NEW_SOURCE_LINE = SOURCE_LINE.replace("`;", "` (updated in 0.3.0);", 1)
USER_LINE = LINE.replace("`dev`;", "`dev` (our team's rule);", 1)
CHANGELOG = f"""# Changelog

## [Unreleased]

## [{N1}] - 2026-12-01

### Changed

- The README says which release changed the branch rule.

## [{N}] - 2026-11-29

### Changed

- The package is `cdl-gitlab`.
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.build_cdl_wheel(tmp_path_factory.mktemp("template-update-wheel"))


@pytest.fixture(scope="module")
def releases(sandbox: h.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This work tree's template tagged N, then a change and its CHANGELOG tagged N+1."""
    template = h.snapshot_template(tmp_path_factory.mktemp("releases") / "cdl", sandbox)
    sandbox.git("tag", N, cwd=template)
    readme = template / "template" / "README.md.jinja"
    text = readme.read_text(encoding="utf-8")
    assert SOURCE_LINE in text
    readme.write_text(text.replace(SOURCE_LINE, NEW_SOURCE_LINE), encoding="utf-8")
    changelog = template / "ci-library" / "CHANGELOG.md"
    changelog.write_text(CHANGELOG, encoding="utf-8")
    sandbox.git("add", "-A", cwd=template)
    sandbox.git("commit", "-q", "-m", f"template {N1}", cwd=template)
    sandbox.git("tag", N1, cwd=template)
    sandbox.publish_library(N1)  # the CI library of release N+1, which the update includes
    return template


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab(token=TOKEN) as fake:
        yield fake


def _render_release_n(sandbox: h.Sandbox, template: Path, root: Path, path: str) -> Path:
    """The news starter rendered at tag N, pushed to a bare repository of the fake instance
    with `dev` as its default branch, checked out on `dev`."""
    project = root / "project"
    copier = h.REPO_ROOT / ".venv" / "bin" / "copier"
    result = subprocess.run(
        [
            str(copier),
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "-d",
            "project_name=News upd",
            "-d",
            "starter=news",
            str(template),
            str(project),
            "--vcs-ref",
            N,
        ],
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert answers["_commit"] == N
    bare = sandbox.remotes / f"{path}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    sandbox.git("init", "-q", "--bare", str(bare), cwd=root)
    sandbox.git("push", "-q", str(bare), "main", "dev", cwd=project)
    sandbox.git("--git-dir", str(bare), "symbolic-ref", "HEAD", "refs/heads/dev", cwd=root)
    sandbox.attach_project(project, path, default_branch="dev")
    sandbox.git("checkout", "-q", "dev", cwd=project)
    return project


def _run(
    project: Path, sandbox: h.Sandbox, wheel: Path, job: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """One job of the rendered pipeline with the shell executor, cdl-gitlab from ``wheel``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return h.run_gcl(
        project,
        "--force-shell-executor",
        "--shell-isolation",
        *args,
        "--variable",
        f"CDL_SOURCE={wheel}",
        "--variable",
        "CDL_PIP_INSTALL_ARGS=--no-index",
        job,
        sandbox=sandbox,
        # the job runs the cdl-gitlab it installed from the wheel, not a session's PYTHONPATH
        extra_env={"PATH": path, "PYTHONPATH": ""},
        timeout=900,
    )


def _run_job(
    project: Path, sandbox: h.Sandbox, gitlab: FakeGitLab, wheel: Path
) -> subprocess.CompletedProcess[str]:
    """The `template-update` job of a schedule with CDL_SCHEDULE=template-update."""
    variables = (
        "CI_PIPELINE_SOURCE=schedule",
        "CDL_SCHEDULE=template-update",
        f"CI_API_V4_URL={gitlab.url}/api/v4",
        f"CDL_TEMPLATE_UPDATE_TOKEN={TOKEN}",
    )
    args = ["--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_API_V4_URL"]
    for variable in variables:
        args += ["--variable", variable]
    return _run(project, sandbox, wheel, "template-update", *args)


def _run_check(project: Path, sandbox: h.Sandbox, wheel: Path) -> subprocess.CompletedProcess[str]:
    """The `template-conflicts` job of a push pipeline."""
    return _run(project, sandbox, wheel, "template-conflicts")


def _bare(sandbox: h.Sandbox, path: str, *args: str) -> str:
    bare = sandbox.remotes / f"{path}.git"
    return sandbox.git("--git-dir", str(bare), *args, cwd=bare.parent)


def _heads(sandbox: h.Sandbox, path: str) -> dict[str, str]:
    out = _bare(
        sandbox, path, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads"
    )
    return dict(line.split() for line in out.splitlines())


def _merge_requests(gitlab: FakeGitLab, path: str) -> list[dict]:
    project = gitlab.project(path)
    assert project is not None
    return gitlab.state.merge_requests[project["id"]]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_scheduled_update_pushes_the_branch_and_opens_one_merge_request(
    sandbox: h.Sandbox, releases: Path, wheel: Path, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    path = "ml/news-update"
    gitlab.add_project(path)
    project = _render_release_n(sandbox, releases, tmp_path, path)
    before = _heads(sandbox, path)

    run = _run_job(project, sandbox, gitlab, wheel)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    assert h.job_summary(output).get("template-update") == "success", output[-8000:]
    assert f"template {N} -> {N1}: branch {BRANCH} pushed" in output, output[-4000:]

    heads = _heads(sandbox, path)
    assert set(heads) == {"main", "dev", BRANCH}
    assert heads["dev"] == before["dev"] and heads["main"] == before["main"], "dev/main moved"
    answers = yaml.safe_load(_bare(sandbox, path, "show", f"{BRANCH}:.copier-answers.yml"))
    assert answers["_commit"] == N1
    assert answers["ci_library_version"] == N1, "the CI library moves with the template"
    assert NEW_LINE in _bare(sandbox, path, "show", f"{BRANCH}:README.md")
    parent = _bare(sandbox, path, "rev-parse", f"{BRANCH}^")
    assert parent == before["dev"], "the update branch starts from dev"

    assert len(gitlab.find("POST", "/api/v4/projects/{project}/merge_requests")) == 1
    (mr,) = _merge_requests(gitlab, path)
    assert (mr["source_branch"], mr["target_branch"], mr["state"]) == (BRANCH, "dev", "opened")
    assert mr["title"] == f"Update the CDL template from {N} to {N1}" and not mr["draft"]
    assert f"### [{N1}] - 2026-12-01" in mr["description"]
    assert "The README says which release changed the branch rule." in mr["description"]
    assert "The package is `cdl-gitlab`." not in mr["description"], "only versions crossed"
    # every API call carried the project access token (the fake answers 401 otherwise)
    assert all(r.headers.get("private-token") == TOKEN for r in gitlab.requests)

    # A second scheduled run: no second merge request, the open one is updated.
    again = _run_job(project, sandbox, gitlab, wheel)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-8000:]
    assert "kept (already on the remote)" in output and "updated" in output, output[-4000:]
    assert len(gitlab.find("POST", "/api/v4/projects/{project}/merge_requests")) == 1
    assert len(gitlab.find("PUT", "/api/v4/projects/{project}/merge_requests/{iid}")) == 1
    assert len(_merge_requests(gitlab, path)) == 1
    assert _heads(sandbox, path) == heads


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_conflicting_user_edit_makes_a_draft_naming_the_file(
    sandbox: h.Sandbox, releases: Path, wheel: Path, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    path = "ml/news-conflict"
    gitlab.add_project(path)
    project = _render_release_n(sandbox, releases, tmp_path, path)
    readme = project / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace(LINE, USER_LINE), "utf-8")
    sandbox.git("commit", "-q", "-am", "Our branch rule", cwd=project)
    bare = sandbox.remotes / f"{path}.git"
    sandbox.git("push", "-q", str(bare), "dev", cwd=project)

    run = _run_job(project, sandbox, gitlab, wheel)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    (mr,) = _merge_requests(gitlab, path)
    assert mr["draft"] and mr["title"].startswith("Draft: "), mr["title"]
    assert "## Conflicts" in mr["description"]
    assert "- `README.md`: conflict markers" in mr["description"], mr["description"]
    pushed = _bare(sandbox, path, "show", f"{BRANCH}:README.md")
    assert "<<<<<<< " in pushed and ">>>>>>> " in pushed

    # The conflict check job of the rendered project fails on that branch and passes on dev.
    assert _run_check(project, sandbox, wheel).returncode == 0
    sandbox.git("fetch", "-q", str(bare), f"{BRANCH}:{BRANCH}", cwd=project)
    sandbox.git("checkout", "-q", BRANCH, cwd=project)
    check = _run_check(project, sandbox, wheel)
    output = check.stdout + check.stderr
    assert check.returncode != 0, output[-4000:]
    assert "README.md: conflict markers on lines" in output, output[-4000:]
    assert "1 file(s) with leftover template-update conflicts: README.md" in output


@pytest.mark.slow
def test_the_update_job_runs_only_in_template_update_schedules(
    sandbox: h.Sandbox, releases: Path, tmp_path: Path
) -> None:
    project = _render_release_n(sandbox, releases, tmp_path, "ml/news-list")

    def jobs(*variables: str) -> dict[str, str]:
        args = ["--ignore-predefined-vars", "CI_PIPELINE_SOURCE"]
        for variable in variables:
            args += ["--variable", variable]
        listed = h.list_jobs(project, *args, sandbox=sandbox)
        return {name: job["when"] for name, job in listed.items() if name.startswith("template")}

    scheduled = "CI_PIPELINE_SOURCE=schedule"
    assert jobs(scheduled, "CDL_SCHEDULE=template-update") == {
        "template-update": "on_success",
        "template-conflicts": "never",
    }
    for schedule in ("monitor", "retrain"):
        assert jobs(scheduled, f"CDL_SCHEDULE={schedule}")["template-update"] == "never"
    assert jobs(scheduled)["template-update"] == "never"  # monitor is the default
    assert jobs("CI_PIPELINE_SOURCE=push") == {
        "template-update": "never",
        "template-conflicts": "on_success",
    }


# ------------------------------------------------------------------ quick, no gitlab-ci-local
def test_options_come_from_ci_variables_and_a_project_access_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cdl_gitlab.template.update import TemplateUpdateError, options_from_env

    for name in list(os.environ):
        if name.startswith("CI_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CDL_TEMPLATE_UPDATE_TOKEN", raising=False)
    with pytest.raises(TemplateUpdateError, match=r"project access token.*never a personal"):
        options_from_env(tmp_path, "CDL_TEMPLATE_UPDATE_TOKEN", "dev", "CHANGELOG.md")
    with pytest.raises(TemplateUpdateError, match="give the NAME of a CI/CD variable"):
        options_from_env(tmp_path, "glpat-abc", "dev", "CHANGELOG.md")
    monkeypatch.setenv("CDL_TEMPLATE_UPDATE_TOKEN", TOKEN)
    with pytest.raises(TemplateUpdateError, match="CI_SERVER_URL, CI_PROJECT_PATH not set"):
        options_from_env(tmp_path, "CDL_TEMPLATE_UPDATE_TOKEN", "dev", "CHANGELOG.md")
    monkeypatch.setenv("CI_SERVER_URL", "https://gitlab.example.com")
    monkeypatch.setenv("CI_SERVER_PROTOCOL", "https")
    monkeypatch.setenv("CI_SERVER_HOST", "gitlab.example.com")
    monkeypatch.setenv("CI_SERVER_PORT", "443")
    monkeypatch.setenv("CI_API_V4_URL", "https://gitlab.example.com/api/v4")
    monkeypatch.setenv("CI_PROJECT_PATH", "ml/news")
    options = options_from_env(tmp_path, "CDL_TEMPLATE_UPDATE_TOKEN", "dev", "CHANGELOG.md")
    assert options.push_url == "https://gitlab.example.com:443/ml/news.git"
    assert TOKEN not in options.push_url
    assert (options.gitlab_url, options.project, options.token) == (
        "https://gitlab.example.com",
        "ml/news",
        TOKEN,
    )


def test_one_open_merge_request_per_branch_created_then_updated(gitlab: FakeGitLab) -> None:
    import gitlab as python_gitlab

    from cdl_gitlab.template.conflicts import Conflict
    from cdl_gitlab.template.merge_request import UpdateNote, upsert_merge_request

    gitlab.add_project("ml/news")
    project = python_gitlab.Gitlab(gitlab.url, private_token=TOKEN).projects.get(
        "ml/news", lazy=True
    )
    clean = UpdateNote(N, N1, [], [], "ci-library/CHANGELOG.md")
    action, mr = upsert_merge_request(project, BRANCH, "dev", clean)
    assert (action, mr.iid, mr.target_branch) == ("created", 1, "dev")
    conflicted = UpdateNote(N, N1, [Conflict("cdl.yaml", [3, 5, 7])], [], "CHANGELOG.md")
    action, mr = upsert_merge_request(project, BRANCH, "dev", conflicted)
    assert (action, mr.iid) == ("updated", 1)
    (stored,) = _merge_requests(gitlab, "ml/news")
    assert stored["draft"] and "`cdl.yaml`" in stored["description"]
    listed = gitlab.find("GET", "/api/v4/projects/{project}/merge_requests")
    assert listed[-1].query["source_branch"] == [BRANCH]
    assert listed[-1].query["state"] == ["opened"]
    # another branch (a newer release) gets a merge request of its own
    action, mr = upsert_merge_request(project, "cdl-update/0.4.0", "dev", clean)
    assert (action, mr.iid) == ("created", 2)


def test_git_sends_the_token_to_the_project_only(tmp_path: Path) -> None:
    """The project access token reaches the project's git over HTTP as a Basic header, and
    no other URL (the template's host never sees it)."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cdl_gitlab.template.update import _auth_env

    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path.split("?")[0], self.headers.get("Authorization")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        env = _auth_env(TOKEN, f"{base}/ml/news.git")
        for url in (f"{base}/ml/news.git", f"{base}/cdl/template.git"):
            subprocess.run(
                ["git", "ls-remote", url], cwd=tmp_path, env=env, capture_output=True, timeout=60
            )
    finally:
        server.shutdown()
    expected = "Basic " + base64.b64encode(f"cdl-template-update:{TOKEN}".encode()).decode()
    sent = dict(seen)
    assert sent["/ml/news.git/info/refs"] == expected
    assert sent["/cdl/template.git/info/refs"] is None
