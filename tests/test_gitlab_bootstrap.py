"""hooks/gitlab_bootstrap.py against a real HTTP fake of the GitLab API and a local bare repo."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fakes.gitlab_api import FakeGitLab

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "hooks" / "gitlab_bootstrap.py"
TOKEN = "glpat-Sup3rSecretT0ken"
PROJECT = "group/news-classifier"
ENCODED = "group%2Fnews-classifier"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


boot = _load(SCRIPT, "gitlab_bootstrap")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolated git (no user/system config, no prompts) with an identity; the token is set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_CONFIG_COUNT", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A rendered project: branches main and dev, one initial commit, dev checked out."""
    project = tmp_path / "news-classifier"
    project.mkdir()
    (project / "README.md").write_text("# news classifier\n")
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Initial commit")
    git(project, "branch", "dev")
    git(project, "checkout", "--quiet", "dev")
    return project


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    return remote


@pytest.fixture
def fake(bare: Path) -> Iterator[FakeGitLab]:
    with FakeGitLab(token=TOKEN, repo_url=lambda _path: bare.as_uri()) as server:
        server.add_namespace("group")
        yield server


def args(fake: FakeGitLab, project_dir: Path, *extra: str) -> list[str]:
    return [
        "--project-dir",
        str(project_dir),
        "--gitlab-url",
        fake.url,
        "--project-path",
        PROJECT,
        "--description",
        "BBC news classification",
        *extra,
    ]


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text
    assert base64.b64encode(f"oauth2:{TOKEN}".encode()).decode() not in text


def test_full_bootstrap(
    fake: FakeGitLab,
    project_dir: Path,
    bare: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-Passw0rd")
    monkeypatch.setenv("DET_PASSWORD", "determined/Pa55:word")
    monkeypatch.setenv("KUBECONFIG_B64_PRODUCTION", "cHJvZHVjdGlvbi1rdWJlY29uZmln")

    variables = "REGISTRY_PASSWORD,DET_PASSWORD,KUBECONFIG_B64@production"
    code = boot.main(args(fake, project_dir, "--variables", variables))

    out, err = capfd.readouterr()
    assert code == 0, err
    namespace_id = next(iter(fake.state.namespaces))
    project = fake.project(PROJECT)
    assert project is not None
    pid = project["id"]
    p = f"/api/v4/projects/{pid}"
    assert fake.calls() == [
        ("GET", "/api/v4/user"),
        ("GET", f"/api/v4/projects/{ENCODED}"),
        ("GET", "/api/v4/namespaces/group"),
        ("POST", "/api/v4/projects"),
        ("GET", f"{p}/protected_branches/main"),
        ("POST", f"{p}/protected_branches"),
        ("GET", f"{p}/protected_branches/dev"),
        ("POST", f"{p}/protected_branches"),
        ("PUT", p),
        ("GET", f"{p}/variables"),
        ("POST", f"{p}/variables"),
        ("POST", f"{p}/variables"),
        ("POST", f"{p}/variables"),
        ("GET", f"{p}/environments"),
        ("POST", f"{p}/environments"),
        ("POST", f"{p}/environments"),
        ("GET", f"{p}/protected_environments"),
        ("POST", f"{p}/protected_environments"),
        ("GET", f"{p}/access_tokens"),
        ("GET", f"{p}/variables"),
        ("POST", f"{p}/access_tokens"),
        ("POST", f"{p}/variables"),
        ("GET", f"{p}/deploy_tokens"),
        ("POST", f"{p}/deploy_tokens"),
    ]
    assert all(r.headers.get("private-token") == TOKEN for r in fake.requests)
    created = fake.find("POST", "/api/v4/projects")[0].json
    assert created["namespace_id"] == namespace_id
    assert (created["name"], created["path"]) == ("news-classifier", "news-classifier")
    assert created["description"] == "BBC news classification"
    assert created["visibility"] == "private"
    assert [r.json for r in fake.find("POST", f"{p}/protected_branches")] == [
        {"name": "main", "push_access_level": 40, "merge_access_level": 40},
        {"name": "dev", "push_access_level": 30, "merge_access_level": 30},
    ]
    assert fake.find("PUT", p)[0].json == {"default_branch": "dev"}
    # protected (only main's and dev's pipelines see them), masked, production's only there
    assert [r.json for r in fake.find("POST", f"{p}/variables")][:3] == [
        {
            "key": "REGISTRY_PASSWORD",
            "value": "s3cr3t-Passw0rd",
            "masked": True,
            "raw": False,
            "protected": True,
            "environment_scope": "*",
        },
        {
            "key": "DET_PASSWORD",
            "value": "determined/Pa55:word",
            "masked": True,
            "raw": False,
            "protected": True,
            "environment_scope": "*",
        },
        {
            "key": "KUBECONFIG_B64",
            "value": "cHJvZHVjdGlvbi1rdWJlY29uZmln",
            "masked": True,
            "raw": False,
            "protected": True,
            "environment_scope": "production",
        },
    ]
    assert [r.json["name"] for r in fake.find("POST", f"{p}/environments")] == [
        "staging",
        "production",
    ]
    assert fake.state.protected_environments[pid]["production"]["deploy_access_levels"] == [
        {"access_level": 40}
    ]
    assert project["default_branch"] == "dev"

    # the report token: a project access token with the Reporter role, its own variable
    (token,) = fake.state.access_tokens[pid]
    assert (token["name"], token["scopes"], token["access_level"]) == ("cdl-report", ["api"], 20)
    report = fake.state.variables[pid]["CDL_REPORT_TOKEN"]
    assert report["value"] == token["token"] != TOKEN
    assert report["masked"] is True and report["protected"] is False
    assert all(v["value"] != TOKEN for v in fake.state.variables[pid].values())
    assert token["token"] not in out + err

    # the deploy token GitLab passes to every job (CI_DEPLOY_USER/PASSWORD): registry read only
    (deploy,) = fake.state.deploy_tokens[pid]
    assert (deploy["name"], deploy["scopes"]) == ("gitlab-deploy-token", ["read_registry"])
    assert deploy["token"] not in out + err
    assert all(v["value"] != deploy["token"] for v in fake.state.variables[pid].values())
    assert "deploy token gitlab-deploy-token created (read_registry)" in out

    # main and dev pushed, origin set to the clean URL with upstreams, no token anywhere
    for branch in ("main", "dev"):
        assert git(bare, "rev-parse", branch) == git(project_dir, "rev-parse", branch)
    assert git(project_dir, "remote", "get-url", "origin") == bare.as_uri()
    assert git(project_dir, "config", "branch.dev.remote") == "origin"
    assert_no_secret((project_dir / ".git" / "config").read_text())
    assert_no_secret(git(project_dir, "config", "--list", "--show-origin"))
    assert_no_secret(out + err)
    assert "project group/news-classifier created" in out
    assert "pushed main and dev" in out


def test_rerun_is_idempotent(
    fake: FakeGitLab,
    project_dir: Path,
    bare: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-Passw0rd")
    monkeypatch.setenv("KUBECONFIG_B64_STAGING", "c3RhZ2luZy1rdWJlY29uZmln")
    monkeypatch.setenv("KUBECONFIG_B64_PRODUCTION", "cHJvZHVjdGlvbi1rdWJlY29uZmln")
    variables = "REGISTRY_PASSWORD,KUBECONFIG_B64@staging,KUBECONFIG_B64@production"
    argv = args(fake, project_dir, "--variables", variables)
    assert boot.main(argv) == 0
    first = len(fake.requests)
    pid = fake.project(PROJECT)["id"]
    report_token = fake.state.variables[pid]["CDL_REPORT_TOKEN"]["value"]
    monkeypatch.setenv("REGISTRY_PASSWORD", "r0tated-Passw0rd")
    monkeypatch.setenv("KUBECONFIG_B64_PRODUCTION", "cm90YXRlZC1wcm9kdWN0aW9u")

    assert boot.main(argv) == 0

    out, err = capfd.readouterr()
    second = fake.requests[first:]
    assert [r.method for r in second if r.method in {"POST", "DELETE"}] == []
    puts = [(r.path, r.query) for r in second if r.method == "PUT"]
    base = f"/api/v4/projects/{pid}/variables"
    assert puts == [
        (f"{base}/REGISTRY_PASSWORD", {"filter[environment_scope]": ["*"]}),
        (f"{base}/KUBECONFIG_B64", {"filter[environment_scope]": ["staging"]}),
        (f"{base}/KUBECONFIG_B64", {"filter[environment_scope]": ["production"]}),
    ]
    assert len(fake.state.projects) == 1
    assert list(fake.state.protected_branches[pid]) == ["main", "dev"]
    variables_now = fake.state.variables[pid]
    assert variables_now["REGISTRY_PASSWORD"]["value"] == "r0tated-Passw0rd"
    assert variables_now["KUBECONFIG_B64@staging"]["value"] == "c3RhZ2luZy1rdWJlY29uZmln"
    assert variables_now["KUBECONFIG_B64@production"]["value"] == "cm90YXRlZC1wcm9kdWN0aW9u"
    assert variables_now["CDL_REPORT_TOKEN"]["value"] == report_token  # kept, not rotated
    assert len(fake.state.access_tokens[pid]) == 1
    assert len(fake.state.deploy_tokens[pid]) == 1
    assert "deploy token gitlab-deploy-token exists" in out
    assert sorted(fake.state.environments[pid]) == ["production", "staging"]
    assert f"project {PROJECT} exists (id {pid}): reused" in out
    assert git(project_dir, "remote").split() == ["origin"]
    assert git(bare, "rev-parse", "dev") == git(project_dir, "rev-parse", "dev")
    assert_no_secret(out + err)


def test_masking_plain_raw_or_refused_with_the_reason(
    fake: FakeGitLab,
    project_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLAIN_SECRET", "abcdefgh12345")
    monkeypatch.setenv("DOLLAR_SECRET", "pa$$w0rd!&x")  # GitLab masks it only as raw
    monkeypatch.setenv("SHORT_SECRET", "abc$1")
    monkeypatch.setenv("KUBECONFIG_TEXT", "apiVersion: v1\nkind: Config\n")
    names = "PLAIN_SECRET,DOLLAR_SECRET,SHORT_SECRET,KUBECONFIG_TEXT"

    assert boot.main(args(fake, project_dir, "--variables", names)) == 1

    out, err = capfd.readouterr()
    stored = fake.state.variables[fake.project(PROJECT)["id"]]
    assert (stored["PLAIN_SECRET"]["masked"], stored["PLAIN_SECRET"]["raw"]) == (True, False)
    assert (stored["DOLLAR_SECRET"]["masked"], stored["DOLLAR_SECRET"]["raw"]) == (True, True)
    assert "SHORT_SECRET" not in stored and "KUBECONFIG_TEXT" not in stored
    assert "SHORT_SECRET: GitLab cannot mask its value: it is shorter than 8 characters" in err
    assert "KUBECONFIG_TEXT: GitLab cannot mask its value: it contains whitespace" in err
    assert "pa$$w0rd" not in out + err and "abc$1" not in out + err


def test_unprotected_variables_are_named_explicitly(
    fake: FakeGitLab, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DET_MASTER", "https://determined.example.org:8080")
    monkeypatch.setenv("DET_PASS", "determined-Passw0rd")
    argv = args(fake, project_dir, "--variables", "DET_MASTER,DET_PASS")

    assert boot.main([*argv, "--unprotected", "DET_MASTER"]) == 0

    stored = fake.state.variables[fake.project(PROJECT)["id"]]
    assert stored["DET_MASTER"]["protected"] is False
    assert stored["DET_PASS"]["protected"] is True


def test_without_premium_features_the_run_goes_on_with_warnings(
    fake: FakeGitLab, project_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """GitLab Free: no protected environments; GitLab.com Free: no project access tokens."""
    fake.fail("GET", "/api/v4/projects/{id}/protected_environments", 404, {"message": "404"})
    fake.fail("POST", "/api/v4/projects/{id}/access_tokens", 403, {"message": "403 Forbidden"})
    fake.fail("POST", "/api/v4/projects/{id}/deploy_tokens", 403, {"message": "403 Forbidden"})

    assert boot.main(args(fake, project_dir)) == 0

    err = capfd.readouterr().err
    pid = fake.project(PROJECT)["id"]
    assert "environment production not protected" in err
    assert "create one with the Reporter role and api scope by hand" in err
    assert "CDL_REPORT_TOKEN" not in fake.state.variables[pid]
    assert "name gitlab-deploy-token, scope read_registry" in err
    assert fake.state.deploy_tokens[pid] == []
    assert_no_secret(err)


def test_existing_weaker_protection_is_replaced(fake: FakeGitLab, project_dir: Path) -> None:
    """GitLab's default protection lets developers merge into main: tightened to maintainers."""
    project = fake.add_project(PROJECT, default_branch="main")
    fake.state.protected_branches[project["id"]]["main"] = {
        "name": "main",
        "push_access_levels": [{"access_level": 40}],
        "merge_access_levels": [{"access_level": 30}],
    }

    assert boot.main(args(fake, project_dir)) == 0

    branch = fake.state.protected_branches[project["id"]]["main"]
    assert [lvl["access_level"] for lvl in branch["merge_access_levels"]] == [40]
    assert fake.find("DELETE", "/api/v4/projects/{id}/protected_branches/main")
    assert fake.find("POST", "/api/v4/projects") == []  # reused, not created


def test_failing_step_is_reported_and_repo_left_intact(
    fake: FakeGitLab, project_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.fail("POST", "/api/v4/projects", 403, {"message": "403 Forbidden"})
    before = {b: git(project_dir, "rev-parse", b) for b in ("main", "dev")}

    assert boot.main(args(fake, project_dir)) == 1
    out, err = capfd.readouterr()
    assert "GitLab bootstrap failed at 'create project' (HTTP 403: 403 Forbidden): " in err
    assert "'api' scope" in err  # the hint for 403

    assert boot.run_from_copier(args(fake, project_dir)) == 0
    out2, err2 = capfd.readouterr()
    assert "failed at 'create project' (HTTP 403" in err2
    assert "To retry" in err2
    retry = err2.strip().splitlines()[-1]
    assert "gitlab_bootstrap.py --project-dir" in retry
    assert f"--project-path {PROJECT}" in retry
    assert "pip install" not in err2
    assert_no_secret(out + err + out2 + err2)

    # nothing local touched: same commits, same branches, no remote added, clean tree
    assert {b: git(project_dir, "rev-parse", b) for b in ("main", "dev")} == before
    assert git(project_dir, "branch", "--format=%(refname:short)").split() == ["dev", "main"]
    assert git(project_dir, "remote") == ""
    assert git(project_dir, "status", "--porcelain") == ""
    assert (project_dir / "README.md").exists()


def test_push_sends_token_as_header_only(
    project_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Over HTTP, git sends the token in the Authorization header; a failed push is redacted."""
    with FakeGitLab(token=TOKEN) as server:  # http_url_to_repo points at the fake: no git there
        server.add_namespace("group")
        assert boot.main(args(server, project_dir)) == 1
        git_requests = [r for r in server.requests if not r.path.startswith("/api/")]
        url = server.url
    out, err = capfd.readouterr()
    assert "GitLab bootstrap failed at 'push'" in err
    assert git_requests, "git did not reach the server"
    expected = "Basic " + base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()
    assert git_requests[0].path == f"/{PROJECT}.git/info/refs"
    assert git_requests[0].headers.get("authorization") == expected
    assert_no_secret(out + err)
    assert_no_secret((project_dir / ".git" / "config").read_text())
    assert git(project_dir, "remote", "get-url", "origin") == f"{url}/{PROJECT}.git"


@pytest.mark.parametrize("token_env", ["GITLAB_TOKEN", "MY_GITLAB_TOKEN"])
def test_missing_token_names_the_variable(
    fake: FakeGitLab,
    project_dir: Path,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.setenv("MY_GITLAB_TOKEN", "  ")

    assert boot.main(args(fake, project_dir, "--token-env", token_env)) == 1

    err = capfd.readouterr().err
    assert f"environment variable {token_env} is not set or empty" in err
    assert "failed at 'read token'" in err
    assert fake.requests == []


def test_unmaskable_variable_is_skipped_with_an_error(
    fake: FakeGitLab,
    project_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOOD_SECRET", "abcdefgh12345")
    monkeypatch.setenv("BAD_SECRET", "has spaces!")
    monkeypatch.delenv("ABSENT_SECRET", raising=False)
    argv = args(fake, project_dir, "--variables", "GOOD_SECRET,BAD_SECRET,ABSENT_SECRET")

    assert boot.main(argv) == 1

    out, err = capfd.readouterr()
    pid = fake.project(PROJECT)["id"]
    assert "variable BAD_SECRET: GitLab cannot mask its value: it contains whitespace" in err
    assert "skipped (use --allow-unmasked" in err
    assert "no value in the environment for ABSENT_SECRET" in err
    assert list(fake.state.variables[pid]) == ["GOOD_SECRET", "CDL_REPORT_TOKEN"]
    assert fake.state.variables[pid]["GOOD_SECRET"]["masked"] is True
    assert sorted(fake.state.environments[pid]) == ["production", "staging"]  # the run went on
    assert "has spaces!" not in out + err

    assert boot.main([*argv, "--allow-unmasked"]) == 0
    assert fake.state.variables[pid]["BAD_SECRET"]["masked"] is False
    assert "created UNMASKED" in capfd.readouterr().err


def test_without_python_gitlab(
    project_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """python-gitlab missing: clear message, and run_from_copier prints install + retry commands.

    The script runs from a copy in a temporary directory, as when Copier clones a template:
    the retry command points at a copy kept in the project's .git directory.
    """
    copy = tmp_path / "template-clone" / "hooks" / "gitlab_bootstrap.py"
    copy.parent.mkdir(parents=True)
    shutil.copy2(SCRIPT, copy)
    cloned = _load(copy, "gitlab_bootstrap_clone")
    monkeypatch.setitem(sys.modules, "gitlab", None)  # makes `import gitlab` raise ImportError
    argv = [
        "--project-dir",
        str(project_dir),
        "--gitlab-url",
        "https://gitlab.invalid",
        "--project-path",
        PROJECT,
    ]

    assert cloned.main(argv) == 1
    assert "python-gitlab is not installed" in capfd.readouterr().err

    assert cloned.run_from_copier(argv) == 0
    lines = capfd.readouterr().err.strip().splitlines()
    kept = project_dir / ".git" / "gitlab_bootstrap.py"
    assert lines[-2].strip().endswith("-m pip install python-gitlab")
    assert lines[-1].split()[1] == str(kept)
    assert kept.read_text() == SCRIPT.read_text()
    assert git(project_dir, "status", "--porcelain") == ""


def test_script_entry_point_with_copier_flag(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python gitlab_bootstrap.py --copier ...` exits 0 even when the bootstrap fails."""
    monkeypatch.delenv("GITLAB_TOKEN")
    argv = [
        sys.executable,
        str(SCRIPT),
        "--project-dir",
        str(project_dir),
        "--gitlab-url",
        "http://127.0.0.1:9",
        "--project-path",
        PROJECT,
    ]
    failing = subprocess.run(argv, capture_output=True, text=True, check=False)
    tolerant = subprocess.run([*argv, "--copier"], capture_output=True, text=True, check=False)
    assert failing.returncode == 1
    assert tolerant.returncode == 0
    assert "GITLAB_TOKEN is not set" in tolerant.stderr
    assert "To retry" in tolerant.stderr
