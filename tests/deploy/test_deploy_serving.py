"""The rendered Seldon wrapper served by the real seldon-core microservice, over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import psutil
import pytest
from deploy_models import KNOWN_TEXTS, known_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    # each worker hands its metrics on once a second, and the requests may have gone to
    # different workers: wait until every worker's share has arrived
    deadline = time.monotonic() + 15
    while True:
        status, text = _get(text_server.metrics_url)
        assert status == 200
        try:
            assert _metric(text, "cdl_prediction_requests_total", model="news-demo") >= 2
            assert _metric(text, "cdl_prediction_items_total", version="1") >= 3
            assert _metric(text, "cdl_prediction_latency_count") >= 2
            assert _metric(text, "cdl_predicted_class_total", **{"class": "sport"}) >= 1
            assert _metric(text, "cdl_predicted_class_total", **{"class": "tech"}) >= 2
            assert _metric(text, "cdl_rejected_requests_total", reason="NOT_TEXT") >= 1
            break
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.3)


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
    ({"data": {"ndarray": [[[float("nan")] * 28] * 28]}}, "BAD_VALUE", "finite"),
    ({"data": {"ndarray": [[[float("inf")] * 28] * 28]}}, "BAD_VALUE", "finite"),
    ({"data": {"ndarray": (np.ones((1, 28, 28)) * -1).tolist()}}, "BAD_VALUE", "0..1"),
    ({"data": {"ndarray": [[[0.5] * 27 + ["a"]] * 28]}}, "WRONG_TYPE", "numbers"),
    ({"data": {"ndarray": [[[0.5] * 27 + [True]] * 28]}}, "WRONG_TYPE", "numbers"),
    ({"data": {"ndarray": [[[0.5] * 27 + [None]] * 28]}}, "WRONG_TYPE", "numbers"),
    ({"data": {"ndarray": np.zeros((1, 28, 28, 3)).tolist()}}, "WRONG_SHAPE", "28x28"),
    (
        {"data": {"tensor": {"shape": [1, 28, 28], "values": [0.5] * 784}, "names": [1]}},
        "BAD_PAYLOAD",
        "names",
    ),
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


# -- the bad-input corpus: raw HTTP, every route, all answered with a 4xx and a reason --------


def _raw(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict | str]:
    """One raw HTTP request (any method, body, content type and other headers); the status
    and the answer."""
    parsed = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", errors="replace")


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
PREDICT = "/api/v1.0/predictions"
FEEDBACK = "/api/v1.0/feedback"


def _deep(levels: int) -> bytes:
    return b'{"data": {"ndarray": ' + b"[" * levels + b'"x"' + b"]" * levels + b"}}"


def _multipart(field: str, value: bytes) -> tuple[bytes, str]:
    boundary = "cdlboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'.encode()
        + value
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


BAD_HTTP_TEXT = [
    # methods
    ("GET", PREDICT, None, None, 405, "METHOD_NOT_ALLOWED"),
    ("PUT", PREDICT, b"{}", JSON, 405, "METHOD_NOT_ALLOWED"),
    ("DELETE", FEEDBACK, None, None, 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/health/ping", b"{}", JSON, 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/health/status", b"{}", JSON, 405, "METHOD_NOT_ALLOWED"),
    ("POST", "/api/v1.0/metadata", b"{}", JSON, 405, "METHOD_NOT_ALLOWED"),
    ("GET", "/no/such/route", None, None, 404, "NOT_FOUND"),
    ("GET", "/NewsDemo.py", None, None, 404, "NOT_FOUND"),  # Seldon served its folder
    ("POST", "/route", b"{}", JSON, 404, "NOT_SERVED"),
    ("POST", "/transform-input", b"{}", JSON, 404, "NOT_SERVED"),
    ("GET", "/predict", None, None, 400, "BAD_JSON"),
    # encodings and content types
    ("POST", PREDICT, b"json=not%20json", FORM, 400, "BAD_JSON"),
    ("POST", PREDICT, b"json=", FORM, 400, "BAD_JSON"),
    ("POST", PREDICT, b"text=hello", FORM, 400, "BAD_JSON"),
    ("POST", "/predict?json=%7Bbroken", None, None, 400, "BAD_JSON"),
    ("POST", PREDICT, b"not json", JSON, 400, "BAD_JSON"),
    ("POST", PREDICT, b"", JSON, 400, "BAD_JSON"),
    ("POST", PREDICT, b'{"strData": "caf\xe9"}', JSON, 400, "BAD_ENCODING"),
    ("POST", PREDICT, b'{"strData": "x"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("POST", PREDICT, b'{"strData": "x"}', "application/xml", 415, "UNSUPPORTED_MEDIA_TYPE"),
    (
        "POST",
        PREDICT,
        b'{"strData": "x"}',
        f"{JSON}; charset=latin-1",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    ("POST", PREDICT, *_multipart("data", b"{not json"), 400, "BAD_JSON"),
    ("POST", FEEDBACK, b"json=%5B", FORM, 400, "BAD_JSON"),
    ("POST", FEEDBACK, b"[1, 2]", JSON, 400, "BAD_FEEDBACK"),
    ("POST", FEEDBACK, b'{"truth": {"data": "no"}}', JSON, 400, "BAD_FEEDBACK"),
    ("POST", FEEDBACK, b'{"reward": "lots"}', JSON, 400, "BAD_FEEDBACK"),
    # sizes and depth
    ("POST", PREDICT, b'{"strData": "' + b"a" * 9_000_000 + b'"}', JSON, 413, "TOO_LARGE"),
    ("POST", PREDICT, _deep(20_000), JSON, 400, "TOO_DEEP"),
    ("POST", PREDICT, b"json=" + _deep(5_000), FORM, 400, "TOO_DEEP"),
    ("POST", FEEDBACK, b'{"truth": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", JSON, 400, "TOO_DEEP"),
    # types
    ("POST", PREDICT, b'{"data": {"ndarray": ["a text", 5]}}', JSON, 400, "NOT_TEXT"),
    ("POST", PREDICT, b'{"data": {"ndarray": [["a"], [true]]}}', JSON, 400, "NOT_TEXT"),
    ("POST", PREDICT, b'{"data": {"ndarray": ["a", null]}}', JSON, 400, "NOT_TEXT"),
    ("POST", PREDICT, b'{"data": {"ndarray": ["a", {"b": 1}]}}', JSON, 400, "NOT_TEXT"),
    ("POST", PREDICT, b'{"data": null}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b'{"data": {"ndarray": ["a"], "names": 5}}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b'{"strData": 5}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b'{"binData": "%%%"}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b'{"strData": "x", "meta": "m"}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b'"just a string"', JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b"[1, 2, 3]", JSON, 400, "BAD_PAYLOAD"),
    ("POST", PREDICT, b"NaN", JSON, 400, "BAD_PAYLOAD"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "reason"),
    BAD_HTTP_TEXT,
    ids=[f"{i}-{case[0]}-{case[5]}" for i, case in enumerate(BAD_HTTP_TEXT)],
)
def test_text_bad_http_requests_get_4xx_before_any_model_code(
    text_server, method, path, body, content_type, status, reason
) -> None:
    got, answer = _raw(text_server.url, method, path, body, content_type)
    assert got == status, answer
    assert answer["status"]["reason"] == reason and answer["status"]["info"], answer
    ok, good = post_json(text_server.predict_url, {"data": {"ndarray": ["football goal"]}})
    assert ok == 200 and good["meta"]["tags"]["predictions"] == ["sport"]


def test_text_guard_rejections_are_in_the_scoring_data(text_server) -> None:
    url = f"sqlite:///{text_server.settings.state_dir / 'scoring.sqlite'}"
    _raw(text_server.url, "POST", PREDICT, b"json=not%20json", FORM)
    _raw(text_server.url, "POST", PREDICT, _deep(20_000), JSON)
    _raw(text_server.url, "POST", PREDICT, b'{"strData": "' + b"a" * 9_000_000 + b'"}', JSON)
    _raw(text_server.url, "POST", PREDICT, b'{"data": {"ndarray": ["a text", 5]}}', JSON)
    deadline = time.monotonic() + 15
    while True:
        errors = [r.error for r in _rows(url, "news-demo", 1) if r.status == "rejected"]
        reasons = {error.split(":")[0] for error in errors}
        if {"BAD_JSON", "TOO_DEEP", "TOO_LARGE", "NOT_TEXT"} <= reasons:
            break
        assert time.monotonic() < deadline, reasons
        time.sleep(0.2)
    assert all(len(error) <= 2000 for error in errors)  # never the (huge) body itself


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["data", "ndarray", "tensor", "strData", "binData", "jsonData", "meta"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
_PAYLOADS = _JSON_VALUES | st.fixed_dictionaries(
    {
        "data": st.dictionaries(
            st.sampled_from(["ndarray", "tensor", "names"]), _JSON_VALUES, max_size=3
        )
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from([PREDICT, FEEDBACK, "/predict"]),
    payload=_PAYLOADS,
    as_form=st.booleans(),
)
def test_text_arbitrary_json_and_form_bodies_never_get_a_5xx(
    text_server, path, payload, as_form
) -> None:
    text = json.dumps(payload)
    if as_form:
        body, content_type = urllib.parse.urlencode({"json": text}).encode(), FORM
    else:
        body, content_type = text.encode(), JSON
    status, answer = _raw(text_server.url, "POST", path, body, content_type)
    assert status < 500, (payload, answer)
    assert _raw(text_server.url, "GET", "/health/ping")[0] == 200


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=4),
    raw=st.binary(max_size=200),
    content_type=st.sampled_from([FORM, JSON, "text/plain", None]),
)
def test_text_arbitrary_form_and_byte_bodies_never_get_a_5xx(
    text_server, fields, raw, content_type
) -> None:
    body = urllib.parse.urlencode(fields).encode() if content_type == FORM else raw
    status, answer = _raw(text_server.url, "POST", PREDICT, body, content_type)
    assert status < 500, (fields, raw, answer)
    assert _raw(text_server.url, "GET", "/health/ping")[0] == 200


# -- feedback with a token --------------------------------------------------------------------

TOKEN_ENV = "CDL_TEST_FEEDBACK_TOKEN"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory, text_checkpoint):
    """The text model served with ``serving.feedback_token_env`` set in cdl.yaml."""
    from deploy_models import make_project, register, serve_project

    from cdl_gitlab.config import load_settings

    root = tmp_path_factory.mktemp("served") / "news"
    settings = make_project(root, "pytorch", "text", "news-demo")
    with (root / "cdl.yaml").open("a", encoding="utf-8") as config:
        config.write(f"serving:\n  feedback_token_env: {TOKEN_ENV}\n")
    settings = load_settings(root / "cdl.yaml")
    register(settings, text_checkpoint)
    os.environ[TOKEN_ENV] = "s3cret-token"
    try:
        yield from serve_project(settings)
    finally:
        os.environ.pop(TOKEN_ENV, None)


def test_feedback_needs_the_token_when_cdl_yaml_names_it(token_server) -> None:
    status, answer = post_json(token_server.predict_url, {"data": {"ndarray": ["goal"]}})
    assert status == 200
    feedback = json.dumps(
        {
            "response": {"meta": answer["meta"], "data": answer["data"]},
            "truth": {"data": {"ndarray": [["sport"]]}},
        }
    ).encode()
    url = f"{token_server.url}/api/v1.0/feedback"
    for authorization in (None, "Bearer wrong-token", "Basic czNjcmV0LXRva2Vu", "Bearer "):
        request = urllib.request.Request(url, data=feedback, method="POST")
        request.add_header("Content-Type", JSON)
        if authorization:
            request.add_header("Authorization", authorization)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401 and info.value.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(info.value.read())["status"]["reason"] == "UNAUTHORIZED"
    request = urllib.request.Request(url, data=feedback, method="POST")
    request.add_header("Content-Type", JSON)
    request.add_header("Authorization", "Bearer s3cret-token")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["meta"]["tags"]["feedback_stored"] == 1
    scoring = f"sqlite:///{token_server.settings.state_dir / 'scoring.sqlite'}"
    deadline = time.monotonic() + 15
    while True:
        rows = _rows(scoring, "news-demo", 1)
        refused = [r for r in rows if r.status == "rejected" and r.error.startswith("UNAUTH")]
        if len(refused) >= 4:
            break
        assert time.monotonic() < deadline, [r.error for r in rows]
        time.sleep(0.2)
    assert post_json(token_server.predict_url, {"data": {"ndarray": ["goal"]}})[0] == 200


# -- last for the text server: it stops it -------------------------------------------------


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
    marker = f"stop marker {time.time_ns()}"
    for _ in range(20):  # scored just before the stop: the workers flush them as they exit
        assert post_json(text_server.predict_url, {"data": {"ndarray": [marker]}})[0] == 200
    stopped = runner.invoke(deploy, ["stop"], obj=app)
    assert stopped.exit_code == 0 and "stopped news-demo v1" in stopped.output
    assert _group_members(group) == []
    url = f"sqlite:///{text_server.settings.state_dir / 'scoring.sqlite'}"
    store = ScoringStore(url)
    flushed = [r for r in store.read(model="news-demo") if r.input_text == marker]
    store.dispose()
    assert len(flushed) == 20
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


@pytest.mark.slow
@pytest.mark.postgres
def test_image_rejections_are_in_the_postgres_scoring_data(image_server) -> None:
    nan = {"data": {"ndarray": [[[float("nan")] * 28] * 28]}}
    assert post_json(image_server.predict_url, nan)[0] == 400
    assert _raw(image_server.url, "POST", PREDICT, _deep(20_000), JSON)[0] == 400
    deadline = time.monotonic() + 15
    while True:
        rows = _rows(image_server.scoring_url, "fashion-demo", 1)
        reasons = {r.error.split(":")[0] for r in rows if r.status == "rejected"}
        if {"BAD_VALUE", "TOO_DEEP"} <= reasons:
            break
        assert time.monotonic() < deadline, reasons
        time.sleep(0.2)
