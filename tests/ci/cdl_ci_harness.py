"""Harness for the CI component tests and the pipeline benchmark.

Everything runs offline:

- the components are GitLab CI/CD component files under ``ci-library/templates``;
- ``interpolate`` applies component inputs the way GitLab does (typed whole values,
  string interpolation inside text, type/options/regex checks, unknown inputs rejected);
- ``Sandbox`` is a throw-away HOME plus a folder of bare repositories that play the GitLab
  instance ``gitlab.example.com``: gitlab-ci-local 4.73.0 clones a component from
  ``https://<host of the project's origin>:<port>/<project path>.git`` (the host in the
  ``component:`` line is not used for the clone), so a ``url.<file-url>.insteadOf
  https://gitlab.example.com:443/`` in the sandbox's gitconfig sends that clone to a local
  bare repository. The project's own origin is written without the port
  (``https://gitlab.example.com/<path>.git``) so ``git remote get-url`` is not rewritten
  and gitlab-ci-local still derives CI_SERVER_FQDN / CI_PROJECT_PATH from it;
- ``render_project`` renders the Copier template;
- ``run_gcl`` runs gitlab-ci-local with the sandbox's environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY_DIR = REPO_ROOT / "ci-library"
TEMPLATES_DIR = LIBRARY_DIR / "templates"
COMPONENTS = ("data-pipeline", "model-pipeline", "deployment-pipeline", "monitoring", "full")
GCL_VERSION = "4.73.0"
GCL = REPO_ROOT / ".tools" / "node" / "bin" / "gitlab-ci-local"
CHECK_JSONSCHEMA = REPO_ROOT / ".venv-tools" / "bin" / "check-jsonschema"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-ci-tools.sh"
HOST = "gitlab.example.com"
LIBRARY_PROJECT = "cdl/ci-library"
GLOBAL_KEYWORDS = frozenset(
    {
        "default",
        "stages",
        "variables",
        "workflow",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    }
)
BRANCHES = {"staging_branch": "dev", "production_branch": "main"}
"""The paper's branch model: the inputs every consumer gives (they have no default)."""
INPUT_TYPES = {"string": str, "boolean": bool, "number": (int, float), "array": list}
_WHOLE = re.compile(r"^\$\[\[\s*inputs\.([\w-]+)\s*\]\]$")
_INNER = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]")


# ----------------------------------------------------------------------------- tools
def tools_missing() -> list[str]:
    missing = []
    if not GCL.exists():
        missing.append(f"gitlab-ci-local ({GCL})")
    if not CHECK_JSONSCHEMA.exists():
        missing.append(f"check-jsonschema ({CHECK_JSONSCHEMA})")
    if shutil.which("rsync") is None:
        missing.append("rsync")
    return missing


def ensure_tools() -> list[str]:
    """Install missing tools with scripts/install-ci-tools.sh; return what is still missing."""
    if tools_missing():
        subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            cwd=REPO_ROOT,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=900,
        )
    return tools_missing()


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )


# ------------------------------------------------------------------------ components
@dataclass
class Component:
    name: str
    path: Path
    header: dict[str, Any]
    body: dict[str, Any]
    text: str

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        return self.header["spec"].get("inputs") or {}

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.inputs.items() if "default" in v}


def load_component(name: str, templates: Path = TEMPLATES_DIR) -> Component:
    path = templates / f"{name}.yml"
    if not path.exists():
        path = templates / name / "template.yml"
    text = path.read_text(encoding="utf-8")
    docs = list(yaml.safe_load_all(text))
    if len(docs) != 2 or not isinstance(docs[0], dict) or "spec" not in docs[0]:
        raise ValueError(f"{path}: a component is a spec header, '---', then the jobs")
    return Component(name, path, docs[0], docs[1], text)


def component_names(templates: Path = TEMPLATES_DIR) -> list[str]:
    names = [p.stem for p in templates.glob("*.yml")]
    names += [p.parent.name for p in templates.glob("*/template.yml")]
    return sorted(names)


def branch_inputs(component: Component) -> dict[str, str]:
    """The branch-model inputs ``component`` takes (``BRANCHES``), which have no default."""
    return {key: value for key, value in BRANCHES.items() if key in component.inputs}


class InputError(ValueError):
    """A component input GitLab would reject (the message follows GitLab's wording)."""


def resolve_inputs(component: Component, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values GitLab would use: given inputs checked against the spec, defaults filled in."""
    spec = component.inputs
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise InputError(f"unknown input arguments: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, definition in spec.items():
        if key in given:
            value = given[key]
        elif "default" in definition:
            value = definition["default"]
        else:
            raise InputError(f"`{key}` input: required value has not been provided")
        kind = definition.get("type", "string")
        expected = INPUT_TYPES[kind]
        if not isinstance(value, expected) or (kind == "number" and isinstance(value, bool)):
            raise InputError(f"`{key}` input: provided value is not a {kind}")
        if "options" in definition and value not in definition["options"]:
            raise InputError(
                f"`{key}` input: `{value}` cannot be used because it is not in the list of "
                "allowed options"
            )
        if "regex" in definition and not re.search(definition["regex"], str(value)):
            raise InputError(f"`{key}` input: provided value does not match required RegEx pattern")
        values[key] = value
    return values


def _render_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def interpolate(component: Component, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The jobs document with ``$[[ inputs.x ]]`` replaced as GitLab does.

    A value that is exactly one interpolation takes the input's type (boolean, number,
    array); interpolation inside a longer string inserts the text of the value.
    """
    values = resolve_inputs(component, given or {})
    used = set(_INNER.findall(yaml.safe_dump(component.body)))
    undeclared = sorted(used - set(values))
    if undeclared:
        raise InputError(f"unknown interpolation key: {', '.join(undeclared)}")

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            whole = _WHOLE.match(node)
            if whole:
                return values[whole.group(1)]
            return _INNER.sub(lambda m: _render_scalar(values[m.group(1)]), node)
        return node

    return walk(component.body)


def used_inputs(component: Component) -> set[str]:
    return set(_INNER.findall(component.text.split("\n---\n", 1)[1]))


# --------------------------------------------------------------------------- git/gcl
def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=dict(env) if env else None,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout.strip()


def worktree_files(directory: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files under ``directory`` (the work in progress)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z", "."],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.split("\0") if f and (directory / f).is_file()})


def copy_worktree(source: Path, dest: Path) -> None:
    for rel in worktree_files(source):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)


@dataclass
class Sandbox:
    """A fake GitLab instance made of bare repositories, and a HOME whose gitconfig reaches it."""

    root: Path
    home: Path = field(init=False)
    remotes: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.remotes = self.root / "remotes"
        self.home.mkdir(parents=True, exist_ok=True)
        self.remotes.mkdir(parents=True, exist_ok=True)
        config = self.home / ".gitconfig"
        config.write_text(
            "[user]\n\tname = CDL Test\n\temail = cdl-test@example.com\n"
            "[init]\n\tdefaultBranch = main\n"
            "[advice]\n\tdetachedHead = false\n"
            '[protocol "file"]\n\tallow = always\n'
            f'[url "{self.remotes.as_uri()}/"]\n\tinsteadOf = https://{HOST}:443/\n',
            encoding="utf-8",
        )

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "CI_", "GITLAB_"))}
        env.update(HOME=str(self.home), GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1", FORCE_COLOR="0")
        env.pop("XDG_CONFIG_HOME", None)
        if extra:
            env.update(extra)
        return env

    def git(self, *args: str, cwd: Path) -> str:
        return git(*args, cwd=cwd, env=self.env())

    def publish_library(
        self, version: str, project: str = LIBRARY_PROJECT, source: Path = LIBRARY_DIR
    ) -> str:
        """Make ``project`` at tag ``version`` from the library's work tree; return its SHA."""
        work = self.root / "library-work" / version
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        copy_worktree(source, work)
        self.git("init", "-q", "-b", "main", cwd=work)
        self.git("add", "-A", cwd=work)
        self.git("commit", "-q", "-m", f"CDL CI/CD components {version}", cwd=work)
        self.git("tag", "-a", version, "-m", version, cwd=work)
        bare = self.remotes / f"{project}.git"
        if not bare.exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q", "--bare", str(bare), cwd=self.root)
        self.git(
            "push",
            "-q",
            "--force",
            str(bare),
            "HEAD:refs/heads/main",
            f"refs/tags/{version}",
            cwd=work,
        )
        return self.git("rev-parse", "HEAD", cwd=work)

    def attach_project(self, project_dir: Path, project: str, default_branch: str = "main") -> None:
        """Give ``project_dir`` an origin on the fake instance, with ``origin/<default>`` at its
        current ``default_branch`` (what ``rules:changes`` compares against in gitlab-ci-local)."""
        remotes = self.git("remote", cwd=project_dir).split()
        if "origin" in remotes:
            self.git("remote", "remove", "origin", cwd=project_dir)
        self.git("remote", "add", "origin", f"https://{HOST}/{project}.git", cwd=project_dir)
        self.set_origin_branch(project_dir, default_branch)
        self.git(
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            f"refs/remotes/origin/{default_branch}",
            cwd=project_dir,
        )

    def set_default_branch(self, project_dir: Path, branch: str, ref: str | None = None) -> None:
        """Make ``branch`` the fake instance's default branch (gitlab-ci-local's
        CI_DEFAULT_BRANCH), with ``origin/<branch>`` at ``ref`` (what ``rules:changes``
        compares against; default: the branch itself)."""
        self.set_origin_branch(project_dir, branch, ref)
        self.git(
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            f"refs/remotes/origin/{branch}",
            cwd=project_dir,
        )

    def set_origin_branch(self, project_dir: Path, branch: str, ref: str | None = None) -> None:
        self.git(
            "update-ref",
            f"refs/remotes/origin/{branch}",
            ref or f"refs/heads/{branch}",
            cwd=project_dir,
        )


_COMPONENT_INCLUDE = re.compile(
    r"^\s*-?\s*component:\s*[^/\s]+/(?P<project>\S+)/[\w-]+@(?P<ref>[^\s$]+)\s*$", re.M
)


def prime_component_includes(cwd: Path) -> list[Path]:
    """Create the ``templates/`` folder gitlab-ci-local 4.73.0 copies each component into.

    It fetches the components of one project@ref in parallel and each fetch ends with
    ``cp -r <clone>/templates <cache>``: when two run at once, both create
    ``<cache>/templates`` and one fails with "File exists". With the folder already there
    every ``cp`` merges into it, so the fetch is deterministic (the component files are
    still fetched: the cache check looks for the files, not the folder).
    """
    ci_file = cwd / ".gitlab-ci.yml"
    if not ci_file.exists():
        return []
    created = []
    for match in _COMPONENT_INCLUDE.finditer(ci_file.read_text(encoding="utf-8")):
        cache = cwd / ".gitlab-ci-local" / "includes" / HOST / match["project"] / match["ref"]
        folder = cache / "templates"
        folder.mkdir(parents=True, exist_ok=True)
        created.append(folder)
    return created


def run_gcl(
    cwd: Path,
    *args: str,
    sandbox: Sandbox,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    prime_component_includes(cwd)
    return subprocess.run(
        [str(GCL), *args],
        cwd=cwd,
        env=sandbox.env(extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expanded_ci(cwd: Path) -> str:
    """The configuration gitlab-ci-local expanded on its last run in ``cwd`` (``--preview``
    prints the same, but Node may exit before a large stdout reaches the pipe: read the file)."""
    return (cwd / ".gitlab-ci-local" / "expanded-gitlab-ci.yml").read_text(encoding="utf-8")


def list_jobs(
    cwd: Path, *args: str, sandbox: Sandbox, attempts: int = 3
) -> dict[str, dict[str, Any]]:
    """``gitlab-ci-local --list-json``: job name -> its description (when, stage, needs ...).

    gitlab-ci-local writes no file for the list, so its stdout goes to a file rather than a
    pipe (Node may exit before a large piped stdout is read: seen cut short once under load),
    and an output that still does not parse is listed again, up to ``attempts`` times."""
    prime_component_includes(cwd)
    failure = ""
    for _ in range(attempts):
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as out:
            result = subprocess.run(
                [str(GCL), "--list-json", *args],
                cwd=cwd,
                env=sandbox.env(),
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=900,
            )
            out.seek(0)
            stdout = out.read()
        if result.returncode != 0:
            raise RuntimeError(f"gitlab-ci-local --list-json failed:\n{stdout}\n{result.stderr}")
        try:
            return {job["name"]: job for job in parse_json_array(stdout)}
        except ValueError as exc:  # (json.JSONDecodeError is one)
            failure = f"{exc}\n{stdout[-2000:]}"
    raise RuntimeError(f"gitlab-ci-local --list-json: no complete JSON list:\n{failure}")


def parse_json_array(output: str) -> list[Any]:
    """The JSON array gitlab-ci-local prints, after any warnings it prints first."""
    match = re.search(r"^\[", output, re.M)
    if not match:
        raise ValueError(f"no JSON array in gitlab-ci-local's output:\n{output}")
    return json.JSONDecoder().raw_decode(output[match.start() :])[0]


def branch_vars(branch: str, source: str = "push", target: str = "") -> tuple[str, ...]:
    """gitlab-ci-local arguments that make a pipeline look like one of ``branch``, or a merge
    request from ``branch`` into ``target``. A schedule does not compare ``rules:changes``
    (on GitLab they are always true in scheduled pipelines)."""
    args = ["--ignore-predefined-vars", "CI_COMMIT_BRANCH,CI_COMMIT_REF_NAME,CI_PIPELINE_SOURCE"]
    if source == "merge_request_event":
        args += [
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--variable",
            f"CI_MERGE_REQUEST_SOURCE_BRANCH_NAME={branch}",
            "--variable",
            f"CI_MERGE_REQUEST_TARGET_BRANCH_NAME={target}",
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ]
    else:
        args += [
            "--variable",
            f"CI_COMMIT_BRANCH={branch}",
            "--variable",
            f"CI_COMMIT_REF_NAME={branch}",
            "--variable",
            f"CI_PIPELINE_SOURCE={source}",
        ]
    if source == "schedule":
        args.append("--no-evaluate-rule-changes")
    return tuple(args)


WHERE_IS_CDL = "python -c \"import cdl_gitlab; print('cdl_gitlab from', cdl_gitlab.__file__)\""
"""A job script line that prints where the job's Python imports cdl_gitlab from."""


def setup_consumer(
    version: str, inputs: Mapping[str, Any], jobs: Mapping[str, Mapping[str, Any]]
) -> str:
    """A consumer project's ``.gitlab-ci.yml``: the data-pipeline component of the fake
    instance at ``version`` with ``inputs``, and ``jobs`` (name -> keys such as ``script``,
    ``needs``, ``variables``) that extend its setup job ``.data-setup`` in stage ``data``:
    a job that runs the components' shared install of cdl-gitlab and then its own script."""
    config: dict[str, Any] = {
        "stages": ["data"],
        "include": [
            {
                "component": f"$CI_SERVER_FQDN/{LIBRARY_PROJECT}/data-pipeline@{version}",
                "inputs": dict(inputs),
            }
        ],
    }
    for name, job in jobs.items():
        config[name] = {"extends": ".data-setup", "stage": "data", **job}
    return yaml.safe_dump(config, sort_keys=False)


def write_consumer(project_dir: Path, config: Mapping[str, Any] | str, message: str = "ci") -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
    (project_dir / ".gitlab-ci.yml").write_text(text, encoding="utf-8")


def new_project(
    sandbox: Sandbox, project_dir: Path, project: str, files: Mapping[str, str]
) -> None:
    """A git project on ``main`` with ``files``, attached to the fake instance."""
    project_dir.mkdir(parents=True, exist_ok=True)
    sandbox.git("init", "-q", "-b", "main", cwd=project_dir)
    for rel, content in files.items():
        target = project_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    sandbox.git("add", "-A", cwd=project_dir)
    sandbox.git("commit", "-q", "-m", "initial", cwd=project_dir)
    sandbox.attach_project(project_dir, project)


# ------------------------------------------------------------------- copier / cdl wheel
def render_project(
    dest: Path, sandbox: Sandbox, answers: Mapping[str, Any], template: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """``copier copy --trust --defaults -d k=v ... <template> <dest> --vcs-ref HEAD``."""
    copier = REPO_ROOT / ".venv" / "bin" / "copier"
    cmd = [str(copier) if copier.exists() else "copier", "copy", "--trust", "--defaults", "--quiet"]
    for key, value in answers.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += ["-d", f"{key}={value}"]
    cmd += [str(template), str(dest), "--vcs-ref", "HEAD"]
    return subprocess.run(cmd, env=sandbox.env(), capture_output=True, text=True, timeout=900)


def snapshot_template(dest: Path, sandbox: Sandbox, source: Path = REPO_ROOT) -> Path:
    """A clean git repository with this work tree's files (tracked and new, not ignored).

    Rendering from it is what ``copier copy ... <repo> --vcs-ref HEAD`` renders from the
    dirty work tree, without Copier copying the whole folder (virtual environments
    included) on every render.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_worktree(source, dest)
    sandbox.git("init", "-q", "-b", "main", cwd=dest)
    sandbox.git("add", "-A", cwd=dest)
    sandbox.git("commit", "-q", "-m", "template snapshot", cwd=dest)
    return dest


def build_cdl_wheel(dest: Path, source: Path = REPO_ROOT) -> Path:
    """A wheel of the work-tree ``cdl-gitlab`` package (built from a snapshot, no network)."""
    snapshot = dest / "cdl-src"
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.mkdir(parents=True)
    library = source / "ci-library"
    for rel in worktree_files(library):
        if rel.startswith("src/") or rel in {"pyproject.toml", "README.md", "LICENSE"}:
            target = snapshot / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(library / rel, target)
    out = dest / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(snapshot),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wheels = sorted(out.glob("cdl_gitlab-*.whl"))
    if not wheels:
        raise RuntimeError("no cdl wheel was built")
    return wheels[-1]


def cdl_version() -> str:
    text = (LIBRARY_DIR / "src" / "cdl_gitlab" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise RuntimeError("cdl_gitlab.__version__ not found")
    return match.group(1)


# ------------------------------------------------------------------------ gcl log parsing
_JOB_DONE = re.compile(
    r"^(?P<job>\S+)\s+finished in (?P<dur>[\d.]+ ?(?:ms|min|s|m|h)\b(?: [\d.]+ ?(?:ms|s)\b)?)"
)
_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\s+(?P<elapsed>[^\]]*)\]\s*")
"""gitlab-ci-local's ``--timestamps`` prefix: ``[HH:MM:SS <time since the job started>]``."""
_SETUP_LINE = "$ # Install cdl-gitlab"


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def job_durations(output: str) -> dict[str, float]:
    """Per-job wall time in seconds from gitlab-ci-local's '<job> finished in <t>' lines."""
    durations: dict[str, float] = {}
    for line in output.splitlines():
        match = _JOB_DONE.match(_TIMESTAMP.sub("", line.strip()))
        if not match:
            continue
        durations[match.group("job")] = _seconds(match.group("dur"))
    return durations


def setup_durations(output: str) -> dict[str, float]:
    """Per-job time of the cdl setup (the shared ``before_script``) from a ``--timestamps``
    log: from its ``$ # Install cdl-gitlab ...`` line to the job's next command line."""
    started: dict[str, float] = {}
    setup: dict[str, float] = {}
    for line in output.splitlines():
        stamp = _TIMESTAMP.match(line.strip())
        if not stamp:
            continue
        job, _, rest = line.strip()[stamp.end() :].partition(" ")
        if not rest.startswith("$ ") or job in setup:
            continue
        elapsed = _seconds(stamp.group("elapsed"))
        if job in started:
            setup[job] = elapsed - started[job]
        elif rest.startswith(_SETUP_LINE):
            started[job] = elapsed
    return setup


def _seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"([\d.]+) ?(ms|min|s|m|h)", text):
        value = float(number)
        total += {
            "ms": value / 1000,
            "s": value,
            "m": value * 60,
            "min": value * 60,
            "h": value * 3600,
        }[unit]
    return total


def job_summary(output: str) -> dict[str, str]:
    """Job name -> 'success' / 'failed' / 'warning' from gitlab-ci-local's closing summary."""
    status: dict[str, str] = {}
    for line in output.splitlines():
        line = line.strip()
        match = re.match(r"^(PASS|FAIL|WARN)\s+(?:\[[^\]]*\]\s*)?(\S+)", line)
        if match:
            status[match.group(2)] = {"PASS": "success", "FAIL": "failed", "WARN": "warning"}[
                match.group(1)
            ]
    return status


def iter_images(document: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for name, job in document.items():
        if isinstance(job, dict) and "image" in job:
            image = job["image"]
            yield name, image["name"] if isinstance(image, dict) else image


# ------------------------------------------------------------------- end-to-end runs
NEWS_CLASSES = ("business", "entertainment", "politics", "sport", "tech")
_FILLER = (
    "the",
    "and",
    "said",
    "year",
    "people",
    "report",
    "new",
    "over",
    "would",
    "also",
    "first",
    "week",
    "after",
    "last",
    "more",
    "time",
    "told",
    "made",
    "since",
    "could",
)


def make_news_archive(path: Path, per_class: int = 24, seed: int = 7) -> Path:
    """A tiny BBC-like archive (``bbc/<class>/NNN.txt``): each class has its own vocabulary,
    so a small model learns it in a few epochs. Generated here; no BBC text is used."""
    import random
    import zipfile

    rng = random.Random(seed)
    vocab = {
        c: [
            f"{c[:4]}{w}"
            for w in (
                "alpha",
                "bravo",
                "delta",
                "gamma",
                "kappa",
                "omega",
                "sigma",
                "theta",
                "zeta",
                "lambda",
                "tango",
                "vector",
            )
        ]
        for c in NEWS_CLASSES
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for cls in NEWS_CLASSES:
            for i in range(1, per_class + 1):
                words = [
                    rng.choice(vocab[cls]) if rng.random() < 0.6 else rng.choice(_FILLER)
                    for _ in range(rng.randint(60, 90))
                ]
                title = f"{cls.title()} story {i}"
                archive.writestr(f"bbc/{cls}/{i:03d}.txt", f"{title}\n\n{' '.join(words)}.\n")
    return path


def tiny_settings(project: Path, accuracy_threshold: float = 0.6) -> None:
    """Settings for the tiny dataset, as a developer would commit them on dev: a lower gate,
    a short training run, a tolerant compression gate (a few test items)."""
    config_path = project / "cdl.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config.setdefault("training", {})["accuracy_threshold"] = accuracy_threshold
    compression = config.setdefault("deployment", {}).setdefault("compression", {})
    if isinstance(compression, dict):
        compression["max_accuracy_drop"] = 0.2
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    const_path = project / "model" / "const.yaml"
    if const_path.is_file():
        const = yaml.safe_load(const_path.read_text(encoding="utf-8"))
        hparams = const.get("hyperparameters", {})
        for key, value in {"epochs": 3, "vocab_size": 2000, "global_batch_size": 8}.items():
            if key in hparams:
                hparams[key] = value
        const_path.write_text(yaml.safe_dump(const, sort_keys=False), encoding="utf-8")


@dataclass
class PipelineRun:
    result: subprocess.CompletedProcess[str]
    wall_seconds: float
    durations: dict[str, float]
    status: dict[str, str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def prepare_local_project(
    root: Path, sandbox: Sandbox, template: Path, version: str, project_path: str = "ml/news-e2e"
) -> Path:
    """Render the news starter on the local profile, attach it to the fake instance (``dev``
    its default branch, at the rendered commit) and commit the tiny-dataset settings on dev."""
    project = root / "news-e2e"
    result = render_project(
        project,
        sandbox,
        {
            "project_name": "News e2e",
            "starter": "news",
            "ci_library_version": version,
        },
        template=template,
    )
    if result.returncode != 0:
        raise RuntimeError(f"copier copy failed:\n{result.stdout}\n{result.stderr}")
    sandbox.attach_project(project, project_path)
    sandbox.set_default_branch(project, "dev")  # as the GitLab bootstrap makes it
    sandbox.git("checkout", "-q", "dev", cwd=project)
    tiny_settings(project)
    sandbox.git("commit", "-q", "-am", "Tiny dataset settings", cwd=project)
    return project


def local_pipeline_args(wheel: Path, archive: Path) -> list[str]:
    return [
        "--force-shell-executor",
        "--shell-isolation",
        "--no-artifacts-to-source",
        "--max-job-name-padding",
        "0",
        "--variable",
        f"CDL_SOURCE={wheel}",
        "--variable",
        "CDL_PIP_INSTALL_ARGS=--no-index",
        "--variable",
        f"CDL_DATA_MIRROR={archive}",
        "--variable",
        f"CDL_DATA_SHA256={hashlib.sha256(archive.read_bytes()).hexdigest()}",
    ]


def run_local_pipeline(
    project: Path, sandbox: Sandbox, wheel: Path, archive: Path, *extra: str, timeout: float = 1800
) -> PipelineRun:
    """The whole pipeline of the checked-out branch under gitlab-ci-local, shell executor,
    jobs isolated, artifacts passed between jobs (``extra``: e.g. ``--manual <job>``); job
    Python is this interpreter's environment (cdl itself comes from ``wheel``)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    start = time.perf_counter()
    result = run_gcl(
        project,
        *local_pipeline_args(wheel, archive),
        *extra,
        sandbox=sandbox,
        # no PYTHONPATH: the jobs run the cdl-gitlab they installed from ``wheel``, not the
        # work tree a test session may point PYTHONPATH at
        extra_env={
            "PATH": path,
            "CDL_DATA_MIRROR": str(archive),
            "CDL_DATA_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest(),
            "PYTHONPATH": "",
        },
        timeout=timeout,
    )
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    return PipelineRun(result, wall, job_durations(output), job_summary(output))
