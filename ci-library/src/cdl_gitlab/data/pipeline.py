"""The whole data pipeline: collect -> split -> validate pipelines -> labels, with a summary.

``collect`` and ``split`` run the project's own ``data/collect.py`` / ``data/split.py`` when
they exist (the project may customize them), else the library's steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data import collect as collect_mod
from cdl_gitlab.data import split as split_mod
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.labeling import generate_export, import_payload
from cdl_gitlab.data.labels import dumps
from cdl_gitlab.data.names import SPLITS, labels_repo, split_repo, validated_repo
from cdl_gitlab.data.runner import load_pipelines, run_pipelines
from cdl_gitlab.data.validate import SUMMARY_FILE

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.store import DataStore

Echo = Callable[[str], None]


def run_project_step(
    settings: Settings, name: str, fallback: Callable[[], Any], echo: Echo = print
) -> None:
    """Run ``data/<name>.py`` of the project if present, else ``fallback``."""
    script = settings.root / "data" / f"{name}.py"
    if not script.is_file():
        fallback()
        return
    env = {
        **os.environ,
        "CDL_CONFIG": str(settings.root / "cdl.yaml"),
        "CDL_PROFILE": settings.profile,
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=settings.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.stdout:
        echo(result.stdout.rstrip("\n"))
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        errors = [
            line.removeprefix("cdl: error: ") for line in lines if line.startswith("cdl: error: ")
        ]
        detail = errors[-1] if errors else "\n".join(lines[-15:])
        raise DataError(f"data/{name}.py (exit code {result.returncode}): {detail}")


def collect(settings: Settings, store: DataStore, echo: Echo = print) -> None:
    run_project_step(settings, "collect", lambda: collect_mod.collect(settings, store), echo)


def split(settings: Settings, store: DataStore, echo: Echo = print) -> None:
    run_project_step(settings, "split", lambda: split_mod.split(settings, store), echo)


def validation_summary(settings: Settings, store: DataStore, split: str) -> dict[str, Any]:
    repo = validated_repo(settings, split)
    return json.loads(store.read(repo, settings.config.data.branch, SUMMARY_FILE))


def label(settings: Settings, store: DataStore, echo: Echo) -> None:
    """Folder labels for both splits, through the store-labels pipelines if the project has them."""
    pipelines = load_pipelines(settings.root)
    for name in SPLITS:
        export = generate_export(settings, store, name)
        repo = labels_repo(settings, name)
        store.create_repo(repo, f"Label Studio exports of the {name} split")
        store.put(
            repo,
            settings.config.data.branch,
            {"folder-labels.json": dumps(export)},
            f"folder labels of {len(export)} {name} items",
        )
        pipeline = f"{split_repo(settings, name)}-store-labels"
        if pipeline in pipelines:
            run_pipelines(settings, store, [pipeline], echo)
        else:
            report = import_payload(settings, store, export, name)
            echo(f"labels ({name}): {report}")


def _examples(results: dict[str, dict[str, Any]], limit: int = 3) -> str:
    """One discarded item per reason (at most ``limit``): ``too_short, e.g. a/1.txt (...)``."""
    first: dict[str, dict[str, str]] = {}
    for result in results.values():
        for item in result.get("discarded_items") or []:
            first.setdefault(item["reason"], item)
    return "; ".join(
        f"{reason}, e.g. {item['path']} ({item['detail']})" if item.get("detail") else reason
        for reason, item in sorted(first.items())[:limit]
    )


def check_min_items(settings: Settings, results: dict[str, dict[str, Any]]) -> None:
    """Fail when a split kept fewer than ``data.min_items`` items after validation."""
    minimum = settings.config.data.min_items
    short = {name: result for name, result in results.items() if result["kept"] < minimum}
    if not short:
        return
    counts = ", ".join(f"{name} kept {result['kept']}" for name, result in short.items())
    message = f"too few items to train and test on ({counts}; data.min_items: {minimum})."
    if any(result["discarded"] for result in short.values()):
        message += (
            f" Discarded: {_examples(short)}. Fix the data, or the rules in data.validation "
            "of cdl.yaml"
        )
    else:
        message += " Add items to the data source (folders <class>/<file>)"
    raise DataError(f"{message}, then run `cdl data pipeline` again")


def run_all(settings: Settings, store: DataStore, echo: Echo = print) -> dict[str, Any]:
    """Collect, split, validate and label; prints one line per split and returns the
    summary. Raises :class:`DataError` when a split kept fewer than ``data.min_items``."""
    collect(settings, store, echo)
    split(settings, store, echo)
    validate = [validated_repo(settings, name) for name in SPLITS]
    run_pipelines(settings, store, validate, echo)
    label(settings, store, echo)
    results = {name: validation_summary(settings, store, name) for name in SPLITS}
    minimum = settings.config.data.min_items
    summary: dict[str, Any] = {}
    for name, result in results.items():
        summary[name] = {
            k: result[k] for k in ("total", "kept", "discarded", "reasons", "repaired")
        }
        reasons = ", ".join(f"{k} {v}" for k, v in result["reasons"].items()) or "none"
        short = f" < data.min_items {minimum}" if result["kept"] < minimum else ""
        echo(
            f"{name}: {result['total']} items, {result['kept']} kept{short}, "
            f"{result['discarded']} discarded ({reasons})"
        )
    check_min_items(settings, results)
    return summary
