"""Runs the project's Pachyderm pipeline specs on the local profile, honouring their contract.

For each pipeline: every pfs input resolves to the head commit of ``repo@branch``; the glob
splits it into datums (``/`` = one datum, ``/*`` = one per top-level entry, any per-segment
glob works); ``cross`` takes the product of its children's datums, ``union`` their sum. Each
datum runs in its own subprocess (the exact Pachyderm contract: the step sees only its
datum) with ``CDL_PFS_ROOT=<tmp>/pfs`` holding ``<input-name>/...`` and ``out/``, plus
Pachyderm's ``<input-name>``, ``<input-name>_COMMIT`` and ``PPS_PIPELINE_NAME`` variables.
``cmd[0] == "python"`` runs with this interpreter; the working folder is the project root.
Step output (stdout and stderr, e.g. one line per discarded item) is appended to
``<state_dir>/logs/<pipeline>.log``. The datums' outputs are merged (two datums writing one
path differently is an error) and committed to the output repo (named after the pipeline)
with provenance = the input commits + the run hash: the spec, the step files its ``cmd``
names and the settings steps read (``data.validation``, ``data.branch``, ``model.task``,
``model.classes``). When that provenance equals the output head's, the run is a no-op.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.commits import Commit, CommitRef, Provenance
from cdl_gitlab.data.errors import DataError, SpecError
from cdl_gitlab.data.pachyderm.pfs import PFS_ROOT_ENV
from cdl_gitlab.data.pachyderm.spec import lint_spec, load_spec_file, spec_files, spec_hash
from cdl_gitlab.data.stores.base import DEFAULT_BRANCH, DataStore

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

PIPELINES_DIR = "data/pipelines"


@dataclass(frozen=True)
class Pipeline:
    name: str
    spec: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class PfsInput:
    name: str
    repo: str
    branch: str
    glob: str
    empty_files: bool


@dataclass
class RunResult:
    pipeline: str
    status: str  # "ran" | "up-to-date" | "waiting"
    commit: Commit | None = None
    datums: int = 0
    detail: str = ""


# One datum: for each input name, the commit and the file paths it contains.
Datum = dict[str, tuple[PfsInput, Commit, list[str]]]


def load_pipelines(root: Path) -> dict[str, Pipeline]:
    """The project's specs in ``data/pipelines``, linted; a spec that fails lint is an error."""
    folder = root / PIPELINES_DIR
    if not folder.is_dir():
        raise SpecError(f"{folder}: no pipeline specs folder")
    pipelines: dict[str, Pipeline] = {}
    for path in spec_files([folder]):
        spec = load_spec_file(path)
        problems = lint_spec(spec)
        if problems:
            raise SpecError("\n".join(f"{path}: {problem}" for problem in problems))
        name = spec["pipeline"]["name"]
        pipelines[name] = Pipeline(name, spec, path)
    return pipelines


def pfs_inputs(node: dict[str, Any]) -> list[PfsInput]:
    if "pfs" in node:
        pfs = node["pfs"]
        return [
            PfsInput(
                name=pfs.get("name") or pfs["repo"],
                repo=pfs["repo"],
                branch=pfs.get("branch") or DEFAULT_BRANCH,
                glob=pfs["glob"],
                empty_files=bool(pfs.get("empty_files", pfs.get("emptyFiles", False))),
            )
        ]
    for kind in ("cross", "union"):
        if kind in node:
            return [leaf for child in node[kind] for leaf in pfs_inputs(child)]
    kinds = ", ".join(node)
    raise SpecError(f"input kind {kinds} is not supported by the local runner (pfs, cross, union)")


def order(pipelines: dict[str, Pipeline]) -> list[Pipeline]:
    """Pipelines sorted so that each runs after the pipelines whose output it reads."""
    done: list[Pipeline] = []
    seen: set[str] = set()

    def visit(pipeline: Pipeline, stack: tuple[str, ...]) -> None:
        if pipeline.name in seen:
            return
        if pipeline.name in stack:
            raise SpecError(f"pipelines form a cycle: {' -> '.join((*stack, pipeline.name))}")
        for item in pfs_inputs(pipeline.spec["input"]):
            if item.repo in pipelines:
                visit(pipelines[item.repo], (*stack, pipeline.name))
        seen.add(pipeline.name)
        done.append(pipeline)

    for pipeline in pipelines.values():
        visit(pipeline, ())
    return done


def _glob_match(path: str, glob: str) -> bool:
    pattern = [part for part in glob.split("/") if part]
    parts = path.split("/")
    return len(parts) == len(pattern) and all(
        fnmatch.fnmatchcase(part, pat) for part, pat in zip(parts, pattern, strict=True)
    )


def glob_datums(files: list[str], glob: str) -> list[list[str]]:
    """Split a commit's files into datums the way a Pachyderm glob does."""
    if glob.strip("/") == "":
        return [files] if files else []
    groups: dict[str, list[str]] = {}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if _glob_match(prefix, glob):
                groups.setdefault(prefix, []).append(path)
                break
    return [groups[key] for key in sorted(groups)]


Heads = dict[str, tuple[PfsInput, Commit, list[str]]]


def _datums(node: dict[str, Any], heads: Heads) -> list[Datum]:
    if "pfs" in node:
        (item,) = pfs_inputs(node)
        _, commit, files = heads[item.name]
        return [{item.name: (item, commit, group)} for group in glob_datums(files, item.glob)]
    if "union" in node:
        return [datum for child in node["union"] for datum in _datums(child, heads)]
    children = [_datums(child, heads) for child in node["cross"]]
    return [
        {name: part for datum in combo for name, part in datum.items()}
        for combo in itertools.product(*children)
    ]


def run_hash(pipeline: Pipeline, settings: Settings) -> str:
    """What decides a pipeline's output besides its inputs (see the module docstring)."""
    digest = hashlib.sha256(spec_hash(pipeline.spec).encode())
    for arg in pipeline.spec["transform"].get("cmd", []):
        candidate = settings.root / arg
        if isinstance(arg, str) and "/" in arg and candidate.is_file():
            digest.update(arg.encode() + b"\0" + candidate.read_bytes())
    config = settings.config
    steps_read = {
        "validation": config.data.validation.model_dump(mode="json"),
        "branch": config.data.branch,
        "task": config.model.task,
        "classes": config.model.classes,
    }
    digest.update(json.dumps(steps_read, sort_keys=True).encode())
    return digest.hexdigest()


def _command(transform: dict[str, Any]) -> list[str]:
    cmd = list(transform["cmd"])
    if cmd[0] in ("python", "python3"):
        cmd[0] = sys.executable
    return cmd


def _materialize(
    datum: Datum,
    store: DataStore,
    checkouts: dict[str, Path],
    root: Path,
    work: Path,
    heads: Heads,
) -> None:
    """Lay out the datum's inputs under ``root``.

    An input whose datum is its whole commit (glob ``/``) is checked out in place; otherwise
    files are hard-linked (or copied) from one shared checkout per input.
    """
    for name, (item, commit, files) in datum.items():
        if item.empty_files:
            for path in files:
                target = root / name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            continue
        if len(files) == len(heads[name][2]):
            store.checkout(item.repo, commit.id, root / name)
            continue
        source = checkouts.get(name)
        if source is None:
            source = work / f"checkout-{name}"
            store.checkout(item.repo, commit.id, source)
            checkouts[name] = source
        for path in files:
            target = root / name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source / path, target)
            except OSError:
                shutil.copyfile(source / path, target)


def _merge(src: Path, dest: Path, pipeline: str) -> None:
    for dirpath, _dirs, filenames in os.walk(src):
        for name in filenames:
            full = Path(dirpath, name)
            target = dest / full.relative_to(src)
            if target.exists():
                if target.read_bytes() != full.read_bytes():
                    raise DataError(
                        f"{pipeline}: two datums wrote different content to "
                        f"{target.relative_to(dest).as_posix()}"
                    )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(full, target)


def _run_datum(
    pipeline: Pipeline, settings: Settings, root: Path, datum: Datum, echo: Callable[[str], None]
) -> None:
    transform = pipeline.spec["transform"]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (transform.get("env") or {}).items()})
    env.update(
        {
            PFS_ROOT_ENV: str(root),
            "PPS_PIPELINE_NAME": pipeline.name,
            "CDL_CONFIG": str(settings.root / "cdl.yaml"),
            "CDL_PROFILE": settings.profile,
        }
    )
    for name, (_item, commit, _files) in datum.items():
        env[name] = str(root / name)
        env[f"{name}_COMMIT"] = commit.id
    stdin = "\n".join(transform.get("stdin") or []) or None
    accepted = {0, *(int(code) for code in transform.get("accept_return_code") or [])}
    result = subprocess.run(
        _command(transform),
        cwd=settings.root,
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        check=False,
    )
    if result.stdout:
        echo(result.stdout.rstrip("\n"))
    log = settings.state_dir / "logs" / f"{pipeline.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(result.stdout + result.stderr)
    if result.returncode not in accepted:
        tail = (result.stderr or "").strip().splitlines()[-15:]
        raise DataError(
            f"{pipeline.name}: step {' '.join(transform['cmd'])} failed with exit code "
            f"{result.returncode}:\n" + "\n".join(tail)
        )


def run_pipeline(
    pipeline: Pipeline, settings: Settings, store: DataStore, echo: Callable[[str], None] = log.info
) -> RunResult:
    """Run one pipeline on the current heads of its inputs (or report it is up to date)."""
    spec = pipeline.spec
    heads: Heads = {}
    for item in pfs_inputs(spec["input"]):
        commit = store.head(item.repo, item.branch)
        if commit is None:
            detail = f"input {item.repo}@{item.branch} has no commit yet"
            echo(f"{pipeline.name}: waiting ({detail})")
            return RunResult(pipeline.name, "waiting", detail=detail)
        heads[item.name] = (item, commit, store.list_files(item.repo, commit.id))
    provenance = Provenance(
        inputs=tuple(sorted({CommitRef(i.repo, c.id) for i, c, _ in heads.values()}, key=str)),
        spec_hash=run_hash(pipeline, settings),
    )
    branch = spec.get("output_branch") or spec.get("outputBranch") or DEFAULT_BRANCH
    store.create_repo(pipeline.name, spec.get("description", ""))
    current = store.head(pipeline.name, branch)
    if current is not None and current.provenance == provenance:
        echo(f"{pipeline.name}: up to date (inputs and spec unchanged; commit {current.id[:12]})")
        return RunResult(pipeline.name, "up-to-date", current)
    datums = _datums(spec["input"], heads)
    with _workdir(settings) as work:
        out = work / "out"
        out.mkdir()
        checkouts: dict[str, Path] = {}
        for index, datum in enumerate(datums):
            root = work / f"datum-{index}" / "pfs"
            (root / "out").mkdir(parents=True)
            _materialize(datum, store, checkouts, root, work, heads)
            _run_datum(pipeline, settings, root, datum, echo)
            if len(datums) == 1:
                out = root / "out"  # nothing to merge
            else:
                _merge(root / "out", out, pipeline.name)
                shutil.rmtree(root.parent)
        inputs = ", ".join(str(ref) for ref in provenance.inputs)
        commit = store.put(pipeline.name, branch, out, f"{pipeline.name} on {inputs}", provenance)
    echo(
        f"{pipeline.name}: ran {len(datums)} datum(s) -> {pipeline.name}@{commit.id[:12]} "
        f"({commit.file_count} files)"
    )
    return RunResult(pipeline.name, "ran", commit, len(datums))


@contextlib.contextmanager
def _workdir(settings: Settings) -> Iterator[Path]:
    base = settings.state_dir / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base, prefix="run-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_pipelines(
    settings: Settings,
    store: DataStore,
    names: list[str] | None = None,
    echo: Callable[[str], None] = log.info,
) -> list[RunResult]:
    """Run the named pipelines (default: all), upstream ones first."""
    pipelines = load_pipelines(settings.root)
    if names:
        unknown = sorted(set(names) - set(pipelines))
        if unknown:
            raise SpecError(f"no pipeline {', '.join(unknown)} (known: {', '.join(pipelines)})")
    selected = [p for p in order(pipelines) if not names or p.name in names]
    return [run_pipeline(pipeline, settings, store, echo) for pipeline in selected]
