"""The CDL runtime served by the real MLServer (V2 / Open Inference Protocol), over HTTP.

The servers run from ``.venv-mlserver`` (scripts/install-ci-tools.sh; without it these tests
fail under CI and are skipped elsewhere). The bad-input corpus of the Seldon engine
(test_deploy_serving.py) is reused where it is about the HTTP body itself (encodings, sizes,
depth); the V2 request shapes get their own cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from deploy_models import KNOWN_TEXTS, known_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_deploy_serving import (
    _JSON_VALUES,
    BAD_HTTP_TEXT,
    JSON,
    PREDICT,
    _deep,
    _get,
    _group_members,
    _metric,
    _raw,
    _rows,
)

from cdl_gitlab.serving.local_server import post_json


def _infer_path(server) -> str:
    return f"/v2/models/{server.info.model}/infer"


def _texts(texts: list, datatype: str = "BYTES", shape: list | None = None) -> dict:
    return {
        "inputs": [
            {
                "name": "text",
                "datatype": datatype,
                "shape": shape if shape is not None else [len(texts)],
                "data": texts,
            }
        ]
    }


def _images(array: np.ndarray | list, datatype: str = "FP32") -> dict:
    values = np.asarray(array, dtype=np.float64)
    return {
        "inputs": [
            {
                "name": "image",
                "datatype": datatype,
                "shape": list(values.shape),
                "data": values.ravel().tolist(),
            }
        ]
    }


def _labels(answer: dict) -> list[str]:
    outputs = {output["name"]: output for output in answer["outputs"]}
    return outputs["label"]["data"]


def _probabilities(answer: dict) -> np.ndarray:
    outputs = {output["name"]: output for output in answer["outputs"]}
    return np.asarray(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])


def _reason(answer: dict | str) -> str:
    assert isinstance(answer, dict) and answer.get("error"), answer
    return answer["error"].split(":")[0]


def _alive(server) -> None:
    status, answer = post_json(server.predict_url, _texts(["football goal"]))
    assert status == 200 and _labels(answer) == ["sport"], answer


# -- predictions and routes -------------------------------------------------------------------


def test_v2_text_predictions_for_known_inputs(mlserver_text_server) -> None:
    status, answer = post_json(mlserver_text_server.predict_url, _texts(list(KNOWN_TEXTS)))
    assert status == 200, answer
    assert answer["model_name"] == "news-demo" and answer["model_version"] == "1"
    assert _labels(answer) == list(KNOWN_TEXTS.values())
    probabilities = _probabilities(answer)
    assert probabilities.shape == (len(KNOWN_TEXTS), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert answer["parameters"]["classes"] == ["politics", "sport", "tech"]
    assert answer["parameters"]["request_id"]
    status, nested = post_json(
        mlserver_text_server.predict_url, _texts([["vote in the election"]], shape=[1, 1])
    )
    assert status == 200 and _labels(nested) == ["politics"]


def test_v2_predictions_equal_in_process_predict(mlserver_text_server) -> None:
    from cdl_gitlab.deploy.loading import load_artifact, predict_labels

    texts = [*KNOWN_TEXTS, "a new phone and a vote", "the league"]
    _, predictor = load_artifact(mlserver_text_server.info.artifact)
    labels, expected = predict_labels(predictor, texts)
    status, answer = post_json(mlserver_text_server.predict_url, _texts(texts))
    assert status == 200
    assert _labels(answer) == labels
    assert np.allclose(_probabilities(answer), expected, atol=1e-6)


@pytest.mark.slow
def test_v2_predictions_equal_seldon_predictions(mlserver_text_server, text_server) -> None:
    texts = [*KNOWN_TEXTS, "a new phone and a vote", "the league"]
    status, seldon = post_json(text_server.predict_url, {"data": {"ndarray": texts}})
    assert status == 200
    status, v2 = post_json(mlserver_text_server.predict_url, _texts(texts))
    assert status == 200
    assert _labels(v2) == seldon["meta"]["tags"]["predictions"]
    assert np.allclose(_probabilities(v2), seldon["data"]["ndarray"], atol=1e-6)


def test_v2_ready_health_and_metadata_routes(mlserver_text_server) -> None:
    base = mlserver_text_server.url
    assert _get(f"{base}/v2/health/live")[0] == 200
    assert _get(f"{base}/v2/health/ready")[0] == 200
    assert _get(f"{base}/v2/models/news-demo/ready")[0] == 200
    status, body = _get(f"{base}/v2/models/news-demo")
    metadata = json.loads(body)
    assert status == 200 and metadata["name"] == "news-demo"
    assert metadata["inputs"][0]["datatype"] == "BYTES"
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label"]


def test_v2_cdl_metrics_on_the_metrics_endpoint(mlserver_text_server) -> None:
    server = mlserver_text_server
    post_json(server.predict_url, _texts(["football goal", "chip data"]))
    post_json(server.predict_url, _texts([3], "INT64"))  # rejected: NOT_TEXT
    _raw(server.url, "POST", _infer_path(server), b"{broken", JSON)  # the guard: BAD_JSON
    status, text = _get(server.metrics_url)
    assert status == 200
    assert _metric(text, "cdl_prediction_requests_total", model="news-demo") >= 1
    assert _metric(text, "cdl_prediction_items_total", version="1") >= 2
    assert _metric(text, "cdl_prediction_latency_count") >= 1
    assert _metric(text, "cdl_predicted_class_total", **{"class": "sport"}) >= 1
    assert _metric(text, "cdl_rejected_requests_total", reason="NOT_TEXT") >= 1
    assert _metric(text, "cdl_rejected_requests_total", reason="BAD_JSON") >= 1


# -- the bad-input corpus ----------------------------------------------------------------------

# the Seldon corpus' cases about the body itself (encoding, size, depth): same answers
_BODY_REASONS = {"BAD_JSON", "BAD_ENCODING", "UNSUPPORTED_MEDIA_TYPE", "TOO_LARGE", "TOO_DEEP"}
SHARED_BODY_CASES = [
    (body, content_type, status, reason)
    for method, path, body, content_type, status, reason in BAD_HTTP_TEXT
    if method == "POST"
    and path == PREDICT
    and reason in _BODY_REASONS
    and (
        content_type is None
        or content_type.split(";")[0] in (JSON, "text/plain", "application/xml")
    )
]

V2 = "V2"  # placeholder in the paths below for /v2/models/<name>
V2_TEXT_CASES = [
    # methods and routes
    ("GET", f"{V2}/infer", None, None, 405, None),
    ("PUT", f"{V2}/infer", b"{}", JSON, 405, None),
    ("DELETE", f"{V2}/ready", None, None, 405, None),
    ("GET", "/v2/models/no-such-model/ready", None, None, 404, None),
    ("POST", "/v2/models/no-such-model/infer", json.dumps(_texts(["x"])).encode(), JSON, 404, None),
    ("POST", "/no/such/route", b"{}", JSON, 404, None),
    ("POST", "/v2/repository/index", b"{}", JSON, 404, "NOT_SERVED"),
    ("POST", "/v2/repository/models/news-demo/unload", b"", None, 404, "NOT_SERVED"),
    ("POST", f"{V2}/infer_stream", json.dumps(_texts(["x"])).encode(), JSON, 404, "NOT_SERVED"),
    # encodings and content types
    ("POST", f"{V2}/infer", b"inputs=1", "application/x-www-form-urlencoded", 415, None),
    ("POST", f"{V2}/infer", b"\x1f\x8b\x08broken", "gzip", 415, "UNSUPPORTED_MEDIA_TYPE"),
    # V2 structure
    ("POST", f"{V2}/infer", b'{"inputs": "x"}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", f"{V2}/infer", b'{"inputs": []}', JSON, 400, "BAD_PAYLOAD"),
    ("POST", f"{V2}/infer", b"[1, 2]", JSON, 400, "BAD_PAYLOAD"),
    ("POST", f"{V2}/infer", b"NaN", JSON, 400, "BAD_VALUE"),
    ("POST", f"{V2}/infer", b'{"inputs": [{"name": "t"}]}', JSON, 400, "BAD_PAYLOAD"),
    (
        "POST",
        f"{V2}/infer",
        json.dumps({**_texts(["a"]), "id": "x" * 100_000}).encode(),
        JSON,
        400,
        "BAD_PAYLOAD",
    ),
    (
        "POST",
        f"{V2}/infer",
        json.dumps(_texts(["a"], shape=[10**20])).encode(),
        JSON,
        400,
        "BAD_PAYLOAD",
    ),
    (
        "POST",
        f"{V2}/infer",
        json.dumps(_texts(["a"], datatype="NOT_A_TYPE")).encode(),
        JSON,
        400,
        "BAD_PAYLOAD",
    ),
    ("POST", f"{V2}/infer", json.dumps(_texts(["a"], shape=[-1])).encode(), JSON, 400, None),
    # types, shapes, counts, sizes
    ("POST", f"{V2}/infer", json.dumps(_texts([1.5, 2.5], "FP32")).encode(), JSON, 400, "NOT_TEXT"),
    ("POST", f"{V2}/infer", json.dumps(_texts(["a", 5])).encode(), JSON, 400, "NOT_TEXT"),
    ("POST", f"{V2}/infer", json.dumps(_texts(["a", None])).encode(), JSON, 400, "NOT_TEXT"),
    (
        "POST",
        f"{V2}/infer",
        json.dumps(_texts(["a", "b"], shape=[3])).encode(),
        JSON,
        400,
        "WRONG_SHAPE",
    ),
    (
        "POST",
        f"{V2}/infer",
        json.dumps(_texts(["a", "b", "c", "d"], shape=[2, 2])).encode(),
        JSON,
        400,
        "WRONG_SHAPE",
    ),
    ("POST", f"{V2}/infer", json.dumps(_texts([])).encode(), JSON, 400, "EMPTY_INPUT"),
    ("POST", f"{V2}/infer", json.dumps(_texts(["   "])).encode(), JSON, 400, "EMPTY_INPUT"),
    ("POST", f"{V2}/infer", json.dumps(_texts(["goal"] * 9)).encode(), JSON, 400, "TOO_MANY_ITEMS"),
    (
        "POST",
        f"{V2}/infer",
        json.dumps(_texts(["goal " * 500])).encode(),
        JSON,
        400,
        "TEXT_TOO_LONG",
    ),
    (
        "POST",
        f"{V2}/infer",
        json.dumps({"inputs": _texts(["a"])["inputs"] * 2}).encode(),
        JSON,
        400,
        "BAD_PAYLOAD",
    ),
    (
        "POST",
        f"{V2}/infer",
        b'{"inputs": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        JSON,
        400,
        "TOO_DEEP",
    ),
    # feedback
    ("POST", f"{V2}/feedback", b"[1, 2]", JSON, 400, "BAD_FEEDBACK"),
    ("POST", f"{V2}/feedback", b'{"request_id": "r1"}', JSON, 400, "BAD_FEEDBACK"),
    (
        "POST",
        f"{V2}/feedback",
        b'{"request_id": "r1", "truth": ["cooking"]}',
        JSON,
        400,
        "BAD_FEEDBACK",
    ),
    ("POST", f"{V2}/feedback", b"{broken", JSON, 400, "BAD_JSON"),
    ("POST", f"{V2}/feedback", b'{"truth": ' + b"[" * 20_000 + b"}", JSON, 400, "TOO_DEEP"),
    ("GET", f"{V2}/feedback", None, None, 405, None),
]


def _request(server, method, path, body, content_type) -> tuple[int, dict | str]:
    path = path.replace(V2, f"/v2/models/{server.info.model}")
    if content_type == "gzip":
        return _raw(server.url, method, path, body, JSON, {"Content-Encoding": "gzip"})
    return _raw(server.url, method, path, body, content_type)


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "reason"),
    V2_TEXT_CASES + [("POST", f"{V2}/infer", *case) for case in SHARED_BODY_CASES],
    ids=[f"v2-{i}-{c[0]}-{c[5]}" for i, c in enumerate(V2_TEXT_CASES)]
    + [f"shared-{i}-{c[3]}" for i, c in enumerate(SHARED_BODY_CASES)],
)
def test_v2_bad_requests_get_4xx_with_a_reason_and_the_server_stays_up(
    mlserver_text_server, method, path, body, content_type, status, reason
) -> None:
    got, answer = _request(mlserver_text_server, method, path, body, content_type)
    assert got == status, answer
    if reason is not None:
        assert _reason(answer) == reason and len(answer["error"]) > len(reason) + 2
    _alive(mlserver_text_server)


def test_v2_shared_corpus_is_not_empty() -> None:
    reasons = {reason for *_, reason in SHARED_BODY_CASES}
    assert {"BAD_JSON", "BAD_ENCODING", "TOO_LARGE", "TOO_DEEP"} <= reasons


def test_v2_rejections_are_in_the_scoring_data(mlserver_text_server) -> None:
    server = mlserver_text_server
    url = f"sqlite:///{server.settings.state_dir / 'scoring.sqlite'}"
    path = _infer_path(server)
    _raw(server.url, "POST", path, b"not json", JSON)
    _raw(server.url, "POST", path, _deep(20_000), JSON)
    _raw(server.url, "POST", path, b'{"inputs": [{"name": "x"' + b" " * 9_000_000 + b"}]}", JSON)
    _raw(server.url, "POST", path, b'{"inputs": "x"}', JSON)
    post_json(server.predict_url, _texts(["a text", 5]))
    deadline = time.monotonic() + 15
    while True:
        errors = [r.error for r in _rows(url, "news-demo", 1) if r.status == "rejected"]
        reasons = {error.split(":")[0] for error in errors}
        if {"BAD_JSON", "TOO_DEEP", "TOO_LARGE", "BAD_PAYLOAD", "NOT_TEXT"} <= reasons:
            break
        assert time.monotonic() < deadline, reasons
        time.sleep(0.2)
    assert all(len(error) <= 2000 for error in errors)


def test_v2_scoring_rows_and_feedback(mlserver_text_server) -> None:
    from cdl_gitlab.monitor.feedback import live_accuracy
    from cdl_gitlab.scoring import ScoringStore

    server = mlserver_text_server
    text = "the coach said the team will win the league"
    status, answer = post_json(server.predict_url, _texts([text, "chip"]))
    assert status == 200
    request_id = answer["parameters"]["request_id"]
    url = f"sqlite:///{server.settings.state_dir / 'scoring.sqlite'}"
    deadline = time.monotonic() + 15
    mine: list = []
    while time.monotonic() < deadline and len(mine) < 2:
        mine = [r for r in _rows(url, "news-demo", 1) if r.request_id == request_id]
        time.sleep(0.2)
    assert [r.item_index for r in mine] == [0, 1]
    assert mine[0].status == "ok" and mine[0].predicted == "sport" and mine[0].input_text == text
    assert mine[0].input_stats["n_tokens"] == 9
    feedback = {"request_id": request_id, "truth": ["sport", "politics"]}
    status, stored = post_json(f"{server.url}/v2/models/news-demo/feedback", feedback)
    assert status == 200 and stored["feedback_stored"] == 2, stored
    store = ScoringStore(url)
    try:
        accuracy = live_accuracy(
            store.engine, model="news-demo", version="1", since=datetime.now(UTC) - timedelta(1)
        )
    finally:
        store.dispose()
    assert accuracy.labels == 2 and accuracy.accuracy == 0.5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    route=st.sampled_from(["infer", "feedback", "generate", "ready"]),
    payload=_JSON_VALUES
    | st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.dictionaries(
                    st.sampled_from(["name", "shape", "datatype", "data", "parameters"]),
                    _JSON_VALUES | st.sampled_from(["BYTES", "FP32", "INT64", "BOOL"]),
                    max_size=5,
                ),
                max_size=2,
            )
        }
    ),
    as_form=st.booleans(),
)
def test_v2_arbitrary_json_and_form_bodies_never_get_a_5xx(
    mlserver_text_server, route, payload, as_form
) -> None:
    text = json.dumps(payload)
    if as_form:
        body = urllib.parse.urlencode({"json": text}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = text.encode(), JSON
    path = f"/v2/models/news-demo/{route}"
    status, answer = _raw(mlserver_text_server.url, "POST", path, body, content_type)
    assert status < 500, (payload, answer)
    assert _get(f"{mlserver_text_server.url}/v2/health/live")[0] == 200


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from([JSON, "text/plain", "multipart/form-data", None]),
)
def test_v2_arbitrary_byte_bodies_never_get_a_5xx(mlserver_text_server, raw, content_type) -> None:
    status, answer = _raw(
        mlserver_text_server.url, "POST", _infer_path(mlserver_text_server), raw, content_type
    )
    assert status < 500, (raw, answer)
    assert _get(f"{mlserver_text_server.url}/v2/health/live")[0] == 200


# -- last for the text server: the CLI predicts and stops it -----------------------------------


def test_v2_cli_predict_and_stop_end_the_whole_process_group(mlserver_text_server) -> None:
    from click.testing import CliRunner

    from cdl_gitlab.cli.app import AppContext
    from cdl_gitlab.cli.deploy_cmd import deploy

    server = mlserver_text_server
    runner = CliRunner()
    app = AppContext(server.settings.root / "cdl.yaml", None)
    result = runner.invoke(deploy, ["predict", "the league match", "a new phone"], obj=app)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["sport", "tech"]
    assert lines[0].endswith("the league match") and lines[2] == "(model news-demo v1)"
    raw = runner.invoke(deploy, ["predict", "--raw", "the league match"], obj=app)
    assert _labels(json.loads(raw.output)) == ["sport"]
    group = server.info.pid
    assert _group_members(group)
    marker = f"stop marker {time.time_ns()}"
    for _ in range(10):
        assert post_json(server.predict_url, _texts([marker]))[0] == 200
    started = time.monotonic()
    stopped = runner.invoke(deploy, ["stop"], obj=app)
    took = time.monotonic() - started
    assert stopped.exit_code == 0 and "stopped news-demo v1" in stopped.output
    assert _group_members(group) == []
    assert took < 5.0  # (the < 1 s goal is measured by benchmarks/serving.py)
    url = f"sqlite:///{server.settings.state_dir / 'scoring.sqlite'}"
    from cdl_gitlab.scoring import ScoringStore

    store = ScoringStore(url)
    flushed = [r for r in store.read(model="news-demo") if r.input_text == marker]
    store.dispose()
    assert len(flushed) == 10


# -- the image model ---------------------------------------------------------------------------

BAD_V2_IMAGES = [
    (_images(np.zeros((2, 27, 28))), "WRONG_SHAPE", "28x28"),
    (_images(np.zeros((28,))), "WRONG_SHAPE", "28x28"),
    (_images(np.zeros((1, 28, 28, 3))), "WRONG_SHAPE", "28x28"),
    (_texts(["a picture"]), "WRONG_TYPE", "image model"),
    (_images(np.zeros((0, 28, 28))), "EMPTY_INPUT", "no images"),
    (_images(np.ones((1, 28, 28)) * 300), "BAD_VALUE", "0..1"),
    (_images(np.ones((1, 28, 28)) * -1), "BAD_VALUE", "0..1"),
    (_images(np.zeros((9, 28, 28))), "TOO_MANY_ITEMS", "at most 8"),
    (
        {"inputs": [{"name": "i", "datatype": "FP32", "shape": [1, 28, 28], "data": ["a"] * 784}]},
        "WRONG_TYPE",
        "number",
    ),
    (
        {"inputs": [{"name": "i", "datatype": "FP32", "shape": [1, 28, 28], "data": [True] * 784}]},
        "WRONG_TYPE",
        "number",
    ),
]


def test_v2_image_predictions_and_bad_inputs(mlserver_image_server) -> None:
    server = mlserver_image_server
    images = known_images()
    status, answer = post_json(server.predict_url, _images(np.stack(list(images.values()))))
    assert status == 200, answer
    assert _labels(answer) == list(images)
    for payload, reason, says in BAD_V2_IMAGES:
        status, answer = post_json(server.predict_url, payload)
        assert status == 400 and _reason(answer) == reason and says in answer["error"], answer
    # NaN and inf are not JSON: the body itself is refused (400, not 5xx)
    nan = b'{"inputs": [{"name": "i", "datatype": "FP32", "shape": [1], "data": [NaN]}]}'
    status, answer = _raw(server.url, "POST", _infer_path(server), nan, JSON)
    assert status == 400 and _reason(answer) in ("BAD_JSON", "BAD_VALUE", "WRONG_SHAPE"), answer
    nan_image = json.dumps(_images(np.full((1, 28, 28), np.nan))).encode()  # json writes NaN
    status, answer = _raw(server.url, "POST", _infer_path(server), nan_image, JSON)
    assert status == 400 and _reason(answer) == "BAD_VALUE", answer
    good = _images(images["left"][np.newaxis])
    status, answer = post_json(server.predict_url, good)
    assert status == 200 and _labels(answer) == ["left"]
    url = f"sqlite:///{server.settings.state_dir / 'scoring.sqlite'}"
    deadline = time.monotonic() + 15
    while True:
        rows = _rows(url, "fashion-demo", 1)
        reasons = {r.error.split(":")[0] for r in rows if r.status == "rejected"}
        ok = [r for r in rows if r.status == "ok"]
        if {"WRONG_SHAPE", "BAD_VALUE", "WRONG_TYPE"} <= reasons and len(ok) >= 4:
            break
        assert time.monotonic() < deadline, reasons
        time.sleep(0.2)
    assert ok[0].input_stats["shape"] == [28, 28] and len(ok[0].input_hash) == 64


# -- feedback with a token ---------------------------------------------------------------------

TOKEN_ENV = "CDL_TEST_V2_FEEDBACK_TOKEN"


@pytest.fixture(scope="module")
def mlserver_token_server(tmp_path_factory: pytest.TempPathFactory, text_checkpoint):
    from deploy_models import make_project, mlserver_executable, register, serve_project

    from cdl_gitlab.config import load_settings

    executable = mlserver_executable()
    root = tmp_path_factory.mktemp("mlserved") / "news"
    make_project(root, "pytorch", "text", "news-demo", "mlserver")
    with (root / "cdl.yaml").open("a", encoding="utf-8") as config:
        config.write(f"  feedback_token_env: {TOKEN_ENV}\n")
    settings = load_settings(root / "cdl.yaml")
    register(settings, text_checkpoint)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDL_MLSERVER", str(executable))
        patch.setenv(TOKEN_ENV, "s3cret-token")
        yield from serve_project(settings)


@pytest.mark.slow
def test_v2_feedback_needs_the_token_when_cdl_yaml_names_it(mlserver_token_server) -> None:
    server = mlserver_token_server
    status, answer = post_json(server.predict_url, _texts(["goal"]))
    assert status == 200
    body = json.dumps({"request_id": answer["parameters"]["request_id"], "truth": ["sport"]})
    url = f"{server.url}/v2/models/news-demo/feedback"
    for authorization in (None, "Bearer wrong-token", "Basic czNjcmV0LXRva2Vu", "Bearer "):
        request = urllib.request.Request(url, data=body.encode(), method="POST")
        request.add_header("Content-Type", JSON)
        if authorization:
            request.add_header("Authorization", authorization)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401 and info.value.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(info.value.read())["error"].startswith("UNAUTHORIZED")
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    request.add_header("Content-Type", JSON)
    request.add_header("Authorization", "Bearer s3cret-token")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["feedback_stored"] == 1
    scoring = f"sqlite:///{server.settings.state_dir / 'scoring.sqlite'}"
    deadline = time.monotonic() + 15
    while True:
        rows = _rows(scoring, "news-demo", 1)
        refused = [r for r in rows if r.status == "rejected" and r.error.startswith("UNAUTH")]
        if len(refused) >= 4:
            break
        assert time.monotonic() < deadline, [r.error for r in rows]
        time.sleep(0.2)
    with contextlib.suppress(KeyError):
        os.environ.pop(TOKEN_ENV)


def test_keras_models_are_refused_by_the_mlserver_engine(tmp_path) -> None:
    from deploy_models import make_project

    from cdl_gitlab.serving import local_server

    settings = make_project(tmp_path / "fashion", "keras", "image", "fashion-demo", "mlserver")
    with pytest.raises(local_server.ServeError, match="protobuf"):
        local_server.serve(settings, 1, local_server.free_port(), local_server.free_port())
    assert local_server.read_server(settings) is None


def test_mlserver_settings_files(tmp_path) -> None:
    from cdl_gitlab.serving import mlserver_local

    mlserver_local.write_settings(
        tmp_path,
        model="m",
        version=3,
        artifact=tmp_path / "a",
        port=9,
        grpc_port=8,
        metrics_port=None,
    )
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["http_port"] == 9 and settings["grpc_port"] == 8
    assert settings["metrics_endpoint"] is None and settings["parallel_workers"] == 0
    model = json.loads((tmp_path / "m" / "model-settings.json").read_text())
    assert model["implementation"] == "cdl_gitlab.serving.mlserver_runtime.CDLRuntime"
    assert model["parameters"] == {"uri": str(tmp_path / "a"), "version": "3"}


def test_find_mlserver_order(tmp_path, monkeypatch) -> None:
    from cdl_gitlab.serving import mlserver_local

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CDL_MLSERVER", raising=False)
    with pytest.raises(mlserver_local.MLServerNotFound, match="make setup"):
        mlserver_local.find_mlserver(tmp_path)
    local = tmp_path / ".venv-mlserver" / "bin" / "mlserver"
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    assert mlserver_local.find_mlserver(tmp_path) == local
    monkeypatch.setenv("CDL_MLSERVER", str(tmp_path / "nothing"))
    with pytest.raises(mlserver_local.MLServerNotFound, match="not an executable"):
        mlserver_local.find_mlserver(tmp_path)
    monkeypatch.setenv("CDL_MLSERVER", str(local))
    assert mlserver_local.find_mlserver(tmp_path) == local


def test_missing_mlserver_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch) -> None:
    from deploy_models import mlserver_executable

    monkeypatch.setenv("CDL_MLSERVER", str(tmp_path / "no-mlserver"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install-ci-tools"):
        mlserver_executable()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install-ci-tools"):
        mlserver_executable()
