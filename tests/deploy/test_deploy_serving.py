"""The rendered Seldon wrapper served by the real seldon-core microservice, over HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import psutil
import pytest
from deploy_models import KNOWN_TEXTS, known_images

from cdl_gitlab.scoring import ScoringStore
from cdl_gitlab.serving.local_server import post_json


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


def _rows(url: str, model: str, at_least: int, timeout: float = 15.0) -> list:
    store = ScoringStore(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = store.read(model=model)
            if len(rows) >= at_least or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
    finally:
        store.dispose()


def _labels(answer: dict) -> list[str]:
    names = answer["data"]["names"]
    return [names[int(np.argmax(row))] for row in answer["data"]["ndarray"]]


# -- the PyTorch text model -------------------------------------------------------------------


def test_text_predictions_for_known_inputs(text_server) -> None:
    status, answer = post_json(text_server.predict_url, {"data": {"ndarray": list(KNOWN_TEXTS)}})
    assert status == 200, answer
    assert answer["data"]["names"] == ["politics", "sport", "tech"]
    assert _labels(answer) == list(KNOWN_TEXTS.values())
    assert np.allclose(np.sum(answer["data"]["ndarray"], axis=1), 1.0, atol=1e-4)
    tags = answer["meta"]["tags"]
    assert tags["predictions"] == list(KNOWN_TEXTS.values())
    assert tags["model"] == "news-demo" and tags["version"] == "1" and tags["request_id"]
    status, single = post_json(text_server.predict_url, {"strData": "vote in the election"})
    assert status == 200 and single["meta"]["tags"]["predictions"] == ["politics"]


def test_text_metadata_and_health(text_server) -> None:
    status, body = _get(f"{text_server.url}/api/v1.0/metadata")
    metadata = json.loads(body)
    assert status == 200
    assert metadata["name"] == "news-demo" and metadata["versions"] == ["1"]
    assert metadata["outputs"][0]["schema"]["names"] == ["politics", "sport", "tech"]
    assert metadata["custom"]["lineage.code.commit"].startswith("0123456789")
    assert metadata["custom"]["format"] == "native"
    assert _get(f"{text_server.url}/health/ping") == (200, "pong")
    status, body = _get(f"{text_server.url}/health/status")
    assert status == 200 and json.loads(body)["jsonData"]["status"] == "ok"


BAD_TEXT_REQUESTS = [
    ({"data": {"ndarray": []}}, "EMPTY_INPUT"),
    ({"data": {"names": ["text"]}}, "EMPTY_INPUT"),
    ({"strData": "   "}, "EMPTY_INPUT"),
    ({"data": {"ndarray": [1.5, 2.5]}}, "NOT_TEXT"),
    ({"binData": "aGVsbG8="}, "NOT_TEXT"),
    ({"jsonData": {"text": "hi"}}, "WRONG_TYPE"),
    ({"data": {"ndarray": [["a", "b"], ["c", "d"]]}}, "WRONG_SHAPE"),
    ({"data": {"ndarray": [["a", "b"], ["c"]]}}, "WRONG_SHAPE"),
    ({"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3]}}}, "WRONG_SHAPE"),
    ({"data": {"ndarray": ["goal"] * 9}}, "TOO_MANY_ITEMS"),
    ({"data": {"ndarray": ["goal " * 500]}}, "TEXT_TOO_LONG"),
    ({"nothing": 1}, "BAD_PAYLOAD"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), BAD_TEXT_REQUESTS, ids=[r for _, r in BAD_TEXT_REQUESTS]
)
def test_text_bad_requests_get_400_and_the_server_stays_up(text_server, payload, reason) -> None:
    status, answer = post_json(text_server.predict_url, payload)
    assert status == 400, answer
    assert answer["status"]["reason"] == reason
    assert answer["status"]["info"]
    status, good = post_json(text_server.predict_url, {"data": {"ndarray": ["football goal"]}})
    assert status == 200 and good["meta"]["tags"]["predictions"] == ["sport"]


def test_text_metrics_endpoint(text_server) -> None:
    post_json(text_server.predict_url, {"data": {"ndarray": ["football goal", "chip data"]}})
    post_json(text_server.predict_url, {"data": {"ndarray": [3]}})  # rejected: NOT_TEXT
    post_json(text_server.predict_url, {"data": {"ndarray": ["internet phone"]}})
    status, text = _get(text_server.metrics_url)
    assert status == 200
    assert _metric(text, "cdl_prediction_requests_total", model="news-demo") >= 2
    assert _metric(text, "cdl_prediction_items_total", version="1") >= 3
    assert _metric(text, "cdl_prediction_latency_count") >= 2
    assert _metric(text, "cdl_predicted_class_total", **{"class": "sport"}) >= 1
    assert _metric(text, "cdl_predicted_class_total", **{"class": "tech"}) >= 2
    assert _metric(text, "cdl_rejected_requests_total", reason="NOT_TEXT") >= 1


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the Prometheus samples ``name{...}`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ([-+.\deE]+|NaN)$", line)
        if not match or match.group(1) != name:
            continue
        sample = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(sample.get(key) == value for key, value in labels.items()):
            total += float(match.group(3))
            found = True
    assert found, f"no sample {name}{labels} in the metrics"
    return total


def test_text_scoring_rows_in_sqlite(text_server) -> None:
    text = "the coach said the team will win the league"
    status, answer = post_json(text_server.predict_url, {"data": {"ndarray": [text, "vote"]}})
    assert status == 200
    request_id = answer["meta"]["tags"]["request_id"]
    post_json(text_server.predict_url, {"data": {"ndarray": []}})
    url = f"sqlite:///{text_server.settings.state_dir / 'scoring.sqlite'}"
    deadline = time.monotonic() + 15
    mine: list = []
    while time.monotonic() < deadline and len(mine) < 2:
        mine = [r for r in _rows(url, "news-demo", 1) if r.request_id == request_id]
        time.sleep(0.2)
    assert [r.item_index for r in mine] == [0, 1]
    first = mine[0]
    assert first.status == "ok" and first.version == "1" and first.predicted == "sport"
    assert first.input_kind == "text" and first.input_text == text
    stats = first.input_stats  # cdl_gitlab.features.input_stats, as monitoring expects
    assert stats["n_chars"] == len(text) and stats["n_tokens"] == 9
    assert stats["n_oov"] == 2 and stats["top_stems"]["the"] == 3
    assert set(first.probabilities) == {"politics", "sport", "tech"}
    assert first.latency_ms > 0 and first.ts.tzinfo is not None
    rejected = [r for r in _rows(url, "news-demo", 1) if r.status == "rejected"]
    assert any(r.error.startswith("EMPTY_INPUT") for r in rejected)


def test_text_feedback_is_stored_beside_the_scoring_data(text_server) -> None:
    from cdl_gitlab.monitor.feedback import live_accuracy

    status, answer = post_json(text_server.predict_url, {"data": {"ndarray": ["goal", "chip"]}})
    assert status == 200
    feedback = {
        "request": {"data": {"ndarray": ["goal", "chip"]}},
        "response": {"meta": answer["meta"], "data": answer["data"]},
        "truth": {"data": {"ndarray": [["sport"], ["politics"]]}},
    }
    status, stored = post_json(f"{text_server.url}/api/v1.0/feedback", feedback)
    assert status == 200, stored
    assert stored["meta"]["tags"]["feedback_stored"] == 2
    bad = dict(feedback, truth={"strData": "cooking"})
    status, refused = post_json(f"{text_server.url}/api/v1.0/feedback", bad)
    assert status == 400 and refused["status"]["reason"] == "BAD_FEEDBACK"
    url = f"sqlite:///{text_server.settings.state_dir / 'scoring.sqlite'}"
    _rows(url, "news-demo", 1)  # the prediction's rows are written in the background
    store = ScoringStore(url)
    deadline = time.monotonic() + 15
    while True:
        accuracy = live_accuracy(
            store.engine, model="news-demo", version="1", since=datetime.now(UTC) - timedelta(1)
        )
        if accuracy.labels == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    store.dispose()
    assert accuracy.labels == 2 and accuracy.accuracy == 0.5


def test_cli_predict_and_stop_end_the_whole_process_group(text_server, tmp_path) -> None:
    from click.testing import CliRunner

    from cdl_gitlab.cli.app import AppContext
    from cdl_gitlab.cli.deploy_cmd import deploy

    runner = CliRunner()
    app = AppContext(text_server.settings.root / "cdl.yaml", None)
    result = runner.invoke(deploy, ["predict", "the league match", "a new phone"], obj=app)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["sport", "tech"]
    assert lines[0].endswith("the league match") and lines[2] == "(model news-demo v1)"
    raw = runner.invoke(deploy, ["predict", "--raw", "the league match"], obj=app)
    assert json.loads(raw.output)["meta"]["tags"]["predictions"] == ["sport"]
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps([[1, 2]]))
    bad = runner.invoke(deploy, ["predict", "--json", str(payload)], obj=app)
    assert (bad.exit_code != 0 and "WRONG_SHAPE" in bad.output) or "NOT_TEXT" in bad.output

    group = text_server.info.pid
    assert _group_members(group), "the server's process group should have members"
    stopped = runner.invoke(deploy, ["stop"], obj=app)
    assert stopped.exit_code == 0 and "stopped news-demo v1" in stopped.output
    assert _group_members(group) == []
    assert not (text_server.settings.state_dir / "serve.json").exists()
    assert "no model server is running" in runner.invoke(deploy, ["stop"], obj=app).output


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if (
                os.getpgid(process.info["pid"]) == pgid
                and process.info["status"] != psutil.STATUS_ZOMBIE
            ):
                members.append(process.info["pid"])
    return members


# -- the Keras image model --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_image_predictions_metadata_and_postgres_scoring(image_server) -> None:
    images = known_images()
    payload = {"data": {"ndarray": [img.tolist() for img in images.values()]}}
    status, answer = post_json(image_server.predict_url, payload)
    assert status == 200, answer
    assert _labels(answer) == list(images)
    status, body = _get(f"{image_server.url}/api/v1.0/metadata")
    metadata = json.loads(body)
    assert metadata["inputs"][0]["schema"]["shape"] == [28, 28]
    assert metadata["platform"] == "cdl-keras"

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((images["bottom"] * 255).astype(np.uint8)).save(buffer, format="PNG")
    import base64

    status, png = post_json(
        image_server.predict_url, {"binData": base64.b64encode(buffer.getvalue()).decode()}
    )
    assert status == 200 and png["meta"]["tags"]["predictions"] == ["bottom"]

    rows = _rows(image_server.scoring_url, "fashion-demo", 4)
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) >= 4
    assert {r.predicted for r in ok} == set(images)
    stats = ok[0].input_stats
    assert stats["shape"] == [28, 28] and 0.0 <= stats["mean"] <= 1.0
    assert len(ok[0].input_hash) == 64


BAD_IMAGE_REQUESTS = [
    ({"data": {"ndarray": np.zeros((2, 27, 28)).tolist()}}, "WRONG_SHAPE", "28x28"),
    ({"data": {"ndarray": np.zeros((28,)).tolist()}}, "WRONG_SHAPE", "28x28"),
    ({"data": {"ndarray": [["a"] * 28] * 28}}, "WRONG_TYPE", "numbers"),
    ({"strData": "a picture"}, "WRONG_TYPE", "image model"),
    ({"data": {"ndarray": []}}, "EMPTY_INPUT", "no images"),
    ({"data": {"ndarray": (np.ones((1, 28, 28)) * 300).tolist()}}, "BAD_VALUE", "0..1"),
    ({"data": {"ndarray": np.zeros((9, 28, 28)).tolist()}}, "TOO_MANY_ITEMS", "at most 8"),
    ({"binData": "bm90IGFuIGltYWdl"}, "BAD_IMAGE", "PNG"),
]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("payload", "reason", "says"), BAD_IMAGE_REQUESTS, ids=[r for _, r, _ in BAD_IMAGE_REQUESTS]
)
def test_image_bad_requests_get_400(image_server, payload, reason, says) -> None:
    status, answer = post_json(image_server.predict_url, payload)
    assert status == 400, answer
    assert answer["status"]["reason"] == reason and says in answer["status"]["info"]
    good = {"data": {"ndarray": known_images()["left"].tolist()}}
    status, answer = post_json(image_server.predict_url, good)
    assert status == 200 and answer["meta"]["tags"]["predictions"] == ["left"]
