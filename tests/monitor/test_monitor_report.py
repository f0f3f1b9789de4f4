"""`cdl monitor report` on SQLite: the verdict flips from ok to drift with figures saying why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from monitor_data import (
    image_features,
    image_probabilities,
    make_images,
    make_texts,
    records,
    rejected,
    text_features,
    text_probabilities,
)

from cdl_gitlab.cli import cli
from cdl_gitlab.config import Settings
from cdl_gitlab.monitor import MonitorError
from cdl_gitlab.monitor.checks import Policy
from cdl_gitlab.monitor.drift_report import Served, generate, parse_duration, window
from cdl_gitlab.monitor.reference import compute_reference
from cdl_gitlab.registry import Checkpoint, open_registry
from cdl_gitlab.scoring import ScoringStore, open_scoring_store

NOW = datetime.now(UTC)
SINCE = NOW - timedelta(days=1)
POLICY = Policy(min_samples=100, min_labels=20)


def _text_reference(n: int = 400, seed: int = 0) -> dict[str, Any]:
    texts, labels = make_texts(n, np.random.default_rng(seed))
    return compute_reference(
        "text", texts, text_probabilities(texts), text_features(), labels=labels
    )


def _write_texts(
    store: ScoringStore,
    n: int,
    *,
    version: str = "1",
    shifted: bool = False,
    seed: int = 1,
    with_stats: bool = True,
) -> None:
    texts, _ = make_texts(n, np.random.default_rng(seed), shifted=shifted)
    store.write(
        records(
            "text",
            texts,
            text_probabilities(texts),
            version=version,
            features=text_features(),
            with_stats=with_stats,
            start=NOW - timedelta(hours=10),
            batch=4,
        )
    )


def _generate(
    store: ScoringStore,
    reference: dict[str, Any] | None,
    out: Path,
    version: int = 1,
    task: str = "text",
) -> dict[str, Any]:
    return generate(
        engine=store.engine,
        served=Served("news", version, None, False),
        task=task,
        reference=reference,
        reference_note="test reference",
        since=SINCE,
        until=NOW,
        policy=POLICY,
        out=out,
    )


def test_text_verdict_flips_from_ok_to_drift(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    reference = _text_reference()
    _write_texts(store, 400, version="1")
    _write_texts(store, 400, version="2", shifted=True, seed=2)
    store.write(rejected(5, version="1", start=NOW - timedelta(hours=2)))

    ok = _generate(store, reference, tmp_path / "ok", version=1)
    assert ok["verdict"] == "ok", ok["reasons"]
    assert ok["reasons"] == [] and ok["re_entry"] is None
    assert ok["summary"]["scored_items"] == 400 and ok["summary"]["rejected"] == 5
    assert set(ok["summary"]["latency_ms"]) == {"p50", "p95", "p99"}
    checked = {check["check"] for check in ok["checks"]}
    assert {
        "n_chars",
        "n_tokens",
        "oov_rate",
        "stem_profile",
        "predictions",
        "confidence",
        "error_rate",
    } <= checked
    assert json.loads((tmp_path / "ok" / "verdict.json").read_text())["verdict"] == "ok"

    drift = _generate(store, reference, tmp_path / "drift", version=2)
    assert drift["verdict"] == "drift"
    by_check = {reason["check"]: reason for reason in drift["reasons"]}
    assert {"n_chars", "n_tokens", "oov_rate"} <= set(by_check)
    assert by_check["oov_rate"]["status"] == "drift" and by_check["oov_rate"]["p_value"] < 0.01
    assert by_check["n_chars"]["live_median"] < by_check["n_chars"]["reference_median"]
    assert drift["re_entry"]["pipeline"] == "data"
    assert drift["episode"].startswith("news:v2:drift:input")
    for name in ("n_chars", "oov_rate", "predictions", "confidence", "volume"):
        figure = tmp_path / "drift" / drift["figures"][name]
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (tmp_path / "drift" / "report.md").read_text()
    assert "**Verdict: drift**" in report and "data pipeline" in report
    assert "![out-of-vocabulary rate](oov_rate.png)" in report


def test_brightened_images_drift(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    rng = np.random.default_rng(7)
    ref_images, labels = make_images(400, rng)
    reference = compute_reference(
        "image", ref_images, image_probabilities(ref_images), image_features(), labels=labels
    )
    for version, brighten in (("1", 0.0), ("2", 0.3)):
        images, _ = make_images(300, rng, brighten=brighten)
        store.write(
            records(
                "image",
                images,
                image_probabilities(images),
                version=version,
                start=NOW - timedelta(hours=5),
            )
        )
    assert _generate(store, reference, tmp_path / "ok", 1, "image")["verdict"] == "ok"
    drift = _generate(store, reference, tmp_path / "drift", 2, "image")
    assert drift["verdict"] == "drift"
    kinds = {reason["check"]: reason["kind"] for reason in drift["reasons"]}
    assert kinds["pixel_mean"] == "input" and kinds["predictions"] == "prediction"
    assert (tmp_path / "drift" / "pixel_mean.png").is_file()


def test_too_little_data_is_insufficient(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    _write_texts(store, 30, shifted=True)
    verdict = _generate(store, _text_reference(100), tmp_path / "few")
    assert verdict["verdict"] == "insufficient-data"
    assert "only 30 scored items" in verdict["skipped"][0]["why"]
    report = (tmp_path / "few" / "report.md").read_text()
    assert "Too little data to judge drift: 30 scored items" in report


def test_missing_input_stats_and_reference_degrade(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    _write_texts(store, 200, with_stats=False)  # the wrapper stored only chars/words
    verdict = _generate(store, _text_reference(), tmp_path / "old-wrapper")
    checked = {check["check"] for check in verdict["checks"]}
    assert "n_chars" in checked  # read from the older "chars" key
    skipped = {item["check"]: item["why"] for item in verdict["skipped"]}
    assert "oov_rate" in skipped and "does not record it" in skipped["oov_rate"]
    assert "stem_profile" in skipped and "n_tokens" in skipped
    no_ref = _generate(store, None, tmp_path / "no-reference")
    assert no_ref["verdict"] == "insufficient-data"
    assert {"check": "drift checks", "why": "test reference"} in no_ref["skipped"]
    report = (tmp_path / "no-reference" / "report.md").read_text()
    assert "> Drift cannot be judged: test reference" in report


def test_error_rate_warns(tmp_path: Path) -> None:
    store = ScoringStore(f"sqlite:///{tmp_path / 'scoring.sqlite'}")
    _write_texts(store, 200)
    store.write(rejected(40, start=NOW - timedelta(hours=3)))
    verdict = _generate(store, _text_reference(), tmp_path / "errors")
    assert verdict["verdict"] == "warn"
    assert verdict["reasons"][0]["check"] == "error_rate"


def test_windows() -> None:
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    since, until = window(None, "30m", "7d", now=NOW)
    assert until - since == timedelta(minutes=30)
    since, _ = window("2026-01-02T03:00", None, "7d", now=datetime(2026, 2, 1, tzinfo=UTC))
    assert since == datetime(2026, 1, 2, 3, tzinfo=UTC)
    for bad in (("x", None), (None, "7 days"), ("2026-01-01", "7d"), ("2999-01-01", None)):
        with pytest.raises(MonitorError):
            window(*bad, "7d", now=NOW)


def _register(settings: Settings, tmp_path: Path, metadata: dict[str, Any]) -> int:
    folder = tmp_path / "checkpoint"
    folder.mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes(b"w")
    registry = open_registry(settings)
    return registry.register_version("news", Checkpoint("ckpt-1", folder), metadata).version


def test_cli_exit_codes(
    text_project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _text_reference()
    _register(text_project, tmp_path, {"monitoring": {"reference": reference}})
    _register(
        text_project,
        tmp_path,
        {"monitoring": {"reference": reference}, "deployments": {"production": {"at": "now"}}},
    )
    _register(text_project, tmp_path, {})  # newer, but not in production
    store = open_scoring_store(text_project)
    _write_texts(store, 300, version="2")
    monkeypatch.chdir(text_project.root)
    runner = CliRunner(mix_stderr=False)
    result = runner.invoke(cli, ["monitor", "report", "--last", "2d"])
    assert result.exit_code == 0, result.output
    assert "news v2: ok (300 scored items" in result.output
    assert (text_project.root / "monitoring-report" / "verdict.json").is_file()

    _write_texts(store, 600, version="2", shifted=True, seed=9)
    out = tmp_path / "json-report"
    result = runner.invoke(cli, ["monitor", "report", "--json", "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["verdict"] == "drift"

    result = runner.invoke(cli, ["monitor", "report", "--version", "3"])
    assert result.exit_code == 0
    assert "no reference statistics for news v3" in result.output

    result = runner.invoke(cli, ["monitor", "report", "--since", "yesterday"])
    assert result.exit_code == 1 and "ISO 8601" in str(result.exception)
