"""The whole data pipeline: collect -> split -> validate pipelines -> labels, with a summary.

Every step reports through ``echo`` (the CLI passes ``click.echo``; the default logs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.labeling import generate_export, import_payload
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


def split(settings: Settings, store: DataStore, echo: Echo = log.info) -> SplitResult:
    result = split_step(settings, store)
    echo(str(result))
    return result


def validation_summary(settings: Settings, store: DataStore, split: str) -> dict[str, Any]:
    repo = validated_repo(settings, split)
    return json.loads(store.read(repo, settings.config.data.branch, SUMMARY_FILE))


def label(settings: Settings, store: DataStore, echo: Echo = log.info) -> None:
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


def run_all(settings: Settings, store: DataStore, echo: Echo = log.info) -> dict[str, Any]:
    """Collect, split, validate and label; returns and echoes the per-split summary."""
    collect(settings, store, echo)
    split(settings, store, echo)
    validate = [validated_repo(settings, name) for name in SPLITS]
    run_pipelines(settings, store, validate, echo)
    label(settings, store, echo)
    summary: dict[str, Any] = {}
    for name in SPLITS:
        result = validation_summary(settings, store, name)
        summary[name] = {
            k: result[k] for k in ("total", "kept", "discarded", "reasons", "repaired")
        }
        reasons = ", ".join(f"{k} {v}" for k, v in result["reasons"].items()) or "none"
        echo(
            f"{name}: {result['total']} items, {result['kept']} kept, "
            f"{result['discarded']} discarded ({reasons})"
        )
    return summary
