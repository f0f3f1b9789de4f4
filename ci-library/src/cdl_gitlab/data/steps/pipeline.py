"""The whole data pipeline: collect -> split -> validate pipelines -> labels, with a summary.

Every step reports through ``echo`` (the CLI passes ``click.echo``; the default logs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.labeling import generate_export, import_payload, read_export
from cdl_gitlab.data.labels import dumps
from cdl_gitlab.data.names import SPLITS, labels_repo, split_repo, validated_repo
from cdl_gitlab.data.pachyderm.runner import load_pipelines, run_pipelines
from cdl_gitlab.data.steps.collect import collect as collect_step
from cdl_gitlab.data.steps.split import split as split_step
from cdl_gitlab.data.steps.validate import SUMMARY_FILE

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings
    from cdl_gitlab.data.formats import CollectResult, SplitResult
    from cdl_gitlab.data.stores.base import DataStore

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


def collect(settings: Settings, store: DataStore, echo: Echo = log.info) -> CollectResult:
    result = collect_step(settings, store)
    echo(str(result))
    return result


def split(
    settings: Settings, store: DataStore, echo: Echo = log.info, resplit: bool = False
) -> SplitResult:
    result = split_step(settings, store, resplit=resplit)
    echo(str(result))
    return result


def validation_summary(settings: Settings, store: DataStore, split: str) -> dict[str, Any]:
    repo = validated_repo(settings, split)
    return json.loads(store.read(repo, settings.config.data.branch, SUMMARY_FILE))


def run_or_wait(
    settings: Settings, store: DataStore, runs: dict[str, str], echo: Echo = log.info
) -> None:
    """Bring pipelines' outputs up to date; ``runs`` maps a pipeline to the id of the input
    commit that triggers it. On a local store the runner runs them; on Pachyderm the cluster
    runs them, and this waits (``cluster.pipeline_wait_timeout`` per commit) for their output
    commits in those commits' commit sets, so the model jobs never read a stale output."""
    from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

    if not isinstance(store, PachydermStore):
        run_pipelines(settings, store, list(runs), echo)
        return
    from cdl_gitlab.data.pachyderm.wait import wait_for_outputs

    timeout = settings.config.cluster.pipeline_wait_timeout
    for pipeline, commit_id in runs.items():
        wait_for_outputs(store, [pipeline], commit_id, timeout, echo)


LABELS_DIR = "data/labels"
"""Where a project keeps its labelers' Label Studio exports, ``<split>.json`` (the
``labels_dir`` input of the data-pipeline component defaults to the same folder)."""


def label(
    settings: Settings, store: DataStore, echo: Echo = log.info, labels_dir: str = LABELS_DIR
) -> None:
    """Import each split's labels, through the store-labels pipelines if the project has them:
    the labelers' Label Studio export ``<labels_dir>/<split>.json`` when it exists, else labels
    the data format knows (class folders, idx label files)."""
    pipelines = load_pipelines(settings.root)
    for name in SPLITS:
        exported = settings.root / labels_dir / f"{name}.json"
        if exported.is_file():
            export = read_export(exported)
            files = {"label-studio.json": dumps(export)}
            message = f"Label Studio export {labels_dir}/{name}.json ({len(export)} tasks)"
        else:
            export = generate_export(settings, store, name)
            files = {"folder-labels.json": dumps(export)}
            message = f"folder labels of {len(export)} {name} items"
        echo(f"labels ({name}): {message}")
        repo = labels_repo(settings, name)
        store.create_repo(repo, f"Label Studio exports of the {name} split")
        commit = store.put(repo, settings.config.data.branch, files, message)
        pipeline = f"{split_repo(settings, name)}-store-labels"
        if pipeline in pipelines:
            run_or_wait(settings, store, {pipeline: commit.id}, echo)
        else:
            report = import_payload(settings, store, export, name)
            for line in report.lines():
                echo(f"labels ({name}): {line}")
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


def run_all(
    settings: Settings,
    store: DataStore,
    echo: Echo = log.info,
    resplit: bool = False,
    labels_dir: str = LABELS_DIR,
) -> dict[str, Any]:
    """Collect, split, validate and label; echoes one line per split and returns the
    summary. Raises :class:`DataError` when a split kept fewer than ``data.min_items``."""
    collect(settings, store, echo)
    splits = split(settings, store, echo, resplit)
    validate = {validated_repo(settings, name): splits.commits[name].id for name in SPLITS}
    run_or_wait(settings, store, validate, echo)
    label(settings, store, echo, labels_dir)
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
