"""The CDL runtime served by the real MLServer over gRPC (V2 ``GRPCInferenceService``).

The server is started by the project's own code (``local_server.serve``, engine ``mlserver``)
on 127.0.0.1; its gRPC port is the one written in its ``settings.json``. Requests are built by
:mod:`v2_grpc` (the test environment cannot import MLServer). Every bad request must get a
client-error status with the reason in the details (never ``INTERNAL`` or ``UNKNOWN``), leave
the server answering, and be stored as a rejected scoring row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import v2_grpc
from deploy_models import KNOWN_TEXTS, known_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_deploy_serving import _rows
from v2_grpc import INFERENCE, REPOSITORY, Client, pack_bytes, text_request

from cdl_gitlab.serving.local_server import post_json

MODEL = "news-demo"
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVER_ERRORS = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
MAX_REQUEST_BYTES = 8_000_000  # the default limit (the test project sets none)


def _address(server) -> str:
    folder = server.settings.state_dir / "mlserver"
    port = json.loads((folder / "settings.json").read_text())["grpc_port"]
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def grpc_client(mlserver_text_server):
    client = Client(_address(mlserver_text_server))
    yield client
    client.close()


def _outputs(response) -> dict[str, np.ndarray | list]:
    """``{name: values}`` of a ModelInferResponse (contents or raw output contents)."""
    found: dict[str, np.ndarray | list] = {}
    for index, output in enumerate(response.outputs):
        raw = response.raw_output_contents[index] if response.raw_output_contents else None
        if output.datatype == "FP64":
            values = np.frombuffer(raw, "<f8") if raw is not None else output.contents.fp64_contents
            found[output.name] = np.asarray(values).reshape(list(output.shape))
        else:
            items = _unpack(raw) if raw is not None else list(output.contents.bytes_contents)
            found[output.name] = [item.decode("utf-8") for item in items]
    return found


def _unpack(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def _rest(server, texts: list[str]) -> dict:
    payload = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)]}]}
    payload["inputs"][0]["data"] = texts
    status, answer = post_json(server.predict_url, payload)
    assert status == 200, answer
    return {o["name"]: o for o in answer["outputs"]}


def _alive(client: Client) -> None:
    assert client.live()
    code, details, response = client.infer(text_request(MODEL, ["football goal"]))
    assert code == OK, details
    assert _outputs(response)["label"] == ["sport"]


# -- valid requests ---------------------------------------------------------------------------


def test_grpc_predictions_equal_rest_and_in_process_predict(
    mlserver_text_server, grpc_client
) -> None:
    from cdl_gitlab.deploy.loading import load_artifact, predict_labels

    texts = [*KNOWN_TEXTS, "a new phone and a vote", "the league", "hello world"]
    code, details, response = grpc_client.infer(text_request(MODEL, texts))
    assert code == OK, details
    assert response.model_name == MODEL and response.model_version == "1"
    outputs = _outputs(response)
    rest = _rest(mlserver_text_server, texts)
    assert outputs["label"] == rest["label"]["data"]
    assert outputs["probabilities"].shape == (len(texts), 3)
    assert np.allclose(outputs["probabilities"].ravel(), rest["probabilities"]["data"], atol=1e-9)
    _, predictor = load_artifact(mlserver_text_server.info.artifact)
    labels, expected = predict_labels(predictor, texts)
    assert outputs["label"] == labels
    assert np.allclose(outputs["probabilities"], expected, atol=1e-6)
    assert response.parameters["request_id"].string_param


def test_grpc_raw_input_contents_give_the_same_answer(mlserver_text_server, grpc_client) -> None:
    texts = ["the coach said the team will win the league", "chip data", "ünïcode vote"]
    request = v2_grpc.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.raw_input_contents.append(pack_bytes([t.encode("utf-8") for t in texts]))
    code, details, response = grpc_client.infer(request)
    assert code == OK, details
    assert response.raw_output_contents  # MLServer answers raw to a raw request
    outputs = _outputs(response)
    rest = _rest(mlserver_text_server, texts)
    assert outputs["label"] == rest["label"]["data"]
    assert np.allclose(outputs["probabilities"].ravel(), rest["probabilities"]["data"], atol=1e-9)


def test_grpc_model_ready_and_nested_shape(grpc_client) -> None:
    code, _, answer = grpc_client.call(
        INFERENCE + "ModelReady", v2_grpc.ModelReadyRequest(name=MODEL).SerializeToString()
    )
    assert code == OK and v2_grpc.ModelReadyResponse.FromString(answer).ready
    code, details, response = grpc_client.infer(
        text_request(MODEL, ["vote in the election"], shape=[1, 1])
    )
    assert code == OK and _outputs(response)["label"] == ["politics"], details


# -- the bad-request corpus -------------------------------------------------------------------


def _request(texts=("a text",), datatype="BYTES", shape=None, **fields):
    request = text_request(MODEL, list(texts), datatype=datatype, shape=shape)
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def _with_contents(datatype: str, field: str, values: list, shape: list[int]):
    request = v2_grpc.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="text", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


def _raw_request(raw: list[bytes], inputs: int = 1, datatype: str = "BYTES", shape=(1,)):
    request = v2_grpc.ModelInferRequest(model_name=MODEL)
    for index in range(inputs):
        request.inputs.add(name=f"text{index}", datatype=datatype, shape=list(shape))
    request.raw_input_contents.extend(raw)
    return request


def _no_inputs():
    return v2_grpc.ModelInferRequest(model_name=MODEL)


def _two_inputs():
    request = text_request(MODEL, ["a"])
    request.inputs.append(request.inputs[0])
    return request


def _parameters(**values):
    request = text_request(MODEL, ["a text"])
    for key, value in values.items():
        request.parameters[key].string_param = value
    return request


def _sized(size: int):
    return text_request(MODEL, [b"goal " * (size // 5)])


M = INFERENCE + "ModelInfer"
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
GRPC_CASES = [
    # (id, method, message bytes, expected code, reason at the start of the details)
    ("not-protobuf", M, b"\xff\xff\xff\xff", INVALID, "BAD_PAYLOAD"),
    ("truncated", M, _request().SerializeToString()[:-3], INVALID, "BAD_PAYLOAD"),
    ("empty-message", M, b"", NOT_FOUND, "NOT_FOUND"),
    ("unknown-model", M, _request(model_name="no-such").SerializeToString(), NOT_FOUND, None),
    ("wrong-version", M, _request(model_version="7").SerializeToString(), NOT_FOUND, None),
    ("not-utf8", M, _request([b"\xff\xfe ok", b"x"]).SerializeToString(), INVALID, "BAD_ENCODING"),
    ("half-utf8", M, _request([b"caf\xc3"]).SerializeToString(), INVALID, "BAD_ENCODING"),
    (
        "fp32-datatype",
        M,
        _with_contents("FP32", "fp32_contents", [1.5, 2.5], [2]).SerializeToString(),
        INVALID,
        "NOT_TEXT",
    ),
    (
        "bytes-in-fp32-field",
        M,
        _with_contents("BYTES", "fp32_contents", [1.5], [1]).SerializeToString(),
        INVALID,
        "NOT_TEXT",
    ),
    (
        "bytes-in-int64-field",
        M,
        _with_contents("BYTES", "int64_contents", [3, 4], [2]).SerializeToString(),
        INVALID,
        "NOT_TEXT",
    ),
    (
        "fp32-with-bytes",
        M,
        _with_contents("FP32", "bytes_contents", [b"a"], [1]).SerializeToString(),
        INVALID,
        "NOT_TEXT",
    ),
    ("unknown-datatype", M, _request(datatype="NOT_A_TYPE").SerializeToString(), INVALID, None),
    ("shape-mismatch", M, _request(["a", "b"], shape=[3]).SerializeToString(), INVALID, None),
    (
        "shape-2x2",
        M,
        _request(["a", "b", "c", "d"], shape=[2, 2]).SerializeToString(),
        INVALID,
        None,
    ),
    ("negative-shape", M, _request(["a"], shape=[-1]).SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("huge-shape", M, _request(["a"], shape=[2**40]).SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("no-inputs", M, _no_inputs().SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("two-inputs", M, _two_inputs().SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("no-texts", M, _request([]).SerializeToString(), INVALID, "EMPTY_INPUT"),
    ("blank-text", M, _request(["   "]).SerializeToString(), INVALID, "EMPTY_INPUT"),
    ("too-many", M, _request(["goal"] * 9).SerializeToString(), INVALID, "TOO_MANY_ITEMS"),
    ("too-long", M, _request(["goal " * 500]).SerializeToString(), INVALID, "TEXT_TOO_LONG"),
    (
        "raw-bad-length",
        M,
        _raw_request([b"\xff\xff\xff\xff"]).SerializeToString(),
        INVALID,
        "BAD_PAYLOAD",
    ),
    (
        "raw-length-past-end",
        M,
        _raw_request([(100).to_bytes(4, "little") + b"abc"]).SerializeToString(),
        INVALID,
        "BAD_PAYLOAD",
    ),
    (
        "raw-missing-entry",
        M,
        _raw_request([pack_bytes([b"a"])], inputs=2).SerializeToString(),
        INVALID,
        "BAD_PAYLOAD",
    ),
    (
        "raw-fp32-wrong-size",
        M,
        _raw_request([b"\x00" * 7], datatype="FP32", shape=(2,)).SerializeToString(),
        INVALID,
        "BAD_PAYLOAD",
    ),
    (
        "raw-unknown-datatype",
        M,
        _raw_request([b"\x00" * 4], datatype="NOPE").SerializeToString(),
        INVALID,
        "BAD_PAYLOAD",
    ),
    ("raw-not-utf8", M, _raw_request([pack_bytes([b"\xff"])]).SerializeToString(), INVALID, None),
    ("headers-not-a-map", M, _parameters(headers="x").SerializeToString(), INVALID, None),
    ("long-id", M, _request(id="x" * 100_000).SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("odd-id", M, _request(id="a\nb\x00ü").SerializeToString(), INVALID, "BAD_PAYLOAD"),
    ("id", M, _request(id="my-request-7").SerializeToString(), OK, None),
    ("pandas-content-type", M, _parameters(content_type="pd").SerializeToString(), OK, None),
    (
        "over-the-limit",
        M,
        _sized(MAX_REQUEST_BYTES + 1000).SerializeToString(),
        TOO_BIG,
        "TOO_LARGE",
    ),
    # over gRPC's default 4 MB: the guard's bound is the artifact's, so the runtime checks it
    ("under-the-limit", M, _sized(5_000_000).SerializeToString(), INVALID, "TEXT_TOO_LONG"),
    ("over-grpc-bound", M, _sized(2 * MAX_REQUEST_BYTES + 1000).SerializeToString(), TOO_BIG, None),
    ("metadata-garbage", INFERENCE + "ModelMetadata", b"\xff\xff", INVALID, "BAD_PAYLOAD"),
    ("ready-garbage", INFERENCE + "ModelReady", b"\x0a\xff", INVALID, "BAD_PAYLOAD"),
    # the model repository and streaming: not served (their REST routes are 404)
    (
        "load",
        INFERENCE + "RepositoryModelLoad",
        v2_grpc.RepositoryModelLoadRequest(model_name=MODEL).SerializeToString(),
        NOT_FOUND,
        "NOT_SERVED",
    ),
    (
        "unload",
        INFERENCE + "RepositoryModelUnload",
        v2_grpc.RepositoryModelUnloadRequest(model_name=MODEL).SerializeToString(),
        NOT_FOUND,
        "NOT_SERVED",
    ),
    ("index", INFERENCE + "RepositoryIndex", b"", NOT_FOUND, "NOT_SERVED"),
    (
        "old-unload",
        REPOSITORY + "RepositoryModelUnload",
        v2_grpc.RepositoryModelUnloadRequest(model_name=MODEL).SerializeToString(),
        NOT_FOUND,
        "NOT_SERVED",
    ),
    ("old-index", REPOSITORY + "RepositoryIndex", b"", NOT_FOUND, "NOT_SERVED"),
    ("no-such-method", INFERENCE + "Nope", b"", grpc.StatusCode.UNIMPLEMENTED, None),
]


@pytest.mark.parametrize(
    ("method", "body", "expected", "reason"),
    [case[1:] for case in GRPC_CASES],
    ids=[case[0] for case in GRPC_CASES],
)
def test_grpc_bad_requests_get_a_client_error_with_a_reason(
    grpc_client, method, body, expected, reason
) -> None:
    code, details, _ = grpc_client.call(method, body)
    assert code not in SERVER_ERRORS, details
    assert code == expected, details
    if reason is not None:
        assert details.startswith(f"{reason}: ") and len(details) > len(reason) + 4, details
    _alive(grpc_client)


def test_grpc_bounds_messages_at_twice_the_artifact_limit(grpc_client) -> None:
    # up to twice max_request_bytes the guard answers (TOO_LARGE, stored); beyond, gRPC itself
    code, details, _ = grpc_client.call(M, _sized(2 * MAX_REQUEST_BYTES + 1000).SerializeToString())
    assert code == TOO_BIG and f"vs. {2 * MAX_REQUEST_BYTES})" in details, details
    _alive(grpc_client)


def test_grpc_streaming_inference_is_not_served(grpc_client) -> None:
    stream = grpc_client.channel.stream_stream(INFERENCE + "ModelStreamInfer")
    calls = iter([text_request(MODEL, ["goal"]).SerializeToString()])
    with pytest.raises(grpc.RpcError) as info:
        list(stream(calls, timeout=30))
    assert info.value.code() == NOT_FOUND and info.value.details().startswith("NOT_SERVED")
    _alive(grpc_client)


def test_grpc_repository_calls_leave_the_model_loaded(grpc_client) -> None:
    for service in (INFERENCE, REPOSITORY):
        body = v2_grpc.RepositoryModelUnloadRequest(model_name=MODEL).SerializeToString()
        assert grpc_client.call(service + "RepositoryModelUnload", body)[0] == NOT_FOUND
    code, _, answer = grpc_client.call(
        INFERENCE + "ModelReady", v2_grpc.ModelReadyRequest(name=MODEL).SerializeToString()
    )
    assert code == OK and v2_grpc.ModelReadyResponse.FromString(answer).ready


def test_grpc_rejections_are_in_the_scoring_data(mlserver_text_server, grpc_client) -> None:
    grpc_client.call(M, b"\xff\xff\xff\xff")
    grpc_client.infer(_request([b"\xff\xfe"]))
    grpc_client.infer(_raw_request([(100).to_bytes(4, "little") + b"abc"]))
    grpc_client.infer(_with_contents("FP32", "fp32_contents", [1.5], [1]))
    grpc_client.infer(_request(["goal"] * 9))
    grpc_client.infer(_sized(MAX_REQUEST_BYTES + 1000))
    url = f"sqlite:///{mlserver_text_server.settings.state_dir / 'scoring.sqlite'}"
    wanted = {"BAD_PAYLOAD", "BAD_ENCODING", "NOT_TEXT", "TOO_MANY_ITEMS", "TOO_LARGE"}
    deadline = time.monotonic() + 15
    while True:
        errors = [r.error for r in _rows(url, MODEL, 1) if r.status == "rejected"]
        reasons = {error.split(":")[0] for error in errors}
        if wanted <= reasons:
            break
        assert time.monotonic() < deadline, reasons
        time.sleep(0.2)
    assert all(len(error) <= 2000 for error in errors)
    # one line per refusal in the server's log, no stack trace of MLServer's for a client error
    log = Path(mlserver_text_server.info.log).read_text(errors="replace")
    assert "rejected predict request: NOT_TEXT" in log
    assert "Traceback" not in log, log[-3000:]


# -- property-based ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300))
def test_grpc_arbitrary_message_bytes_never_get_a_server_error(grpc_client, body) -> None:
    code, details, _ = grpc_client.call(M, body)
    assert code not in SERVER_ERRORS, (body, details)
    assert grpc_client.live()


_DATATYPES = st.sampled_from(["BYTES", "FP32", "FP64", "INT64", "INT8", "BOOL", "FP16", "X", ""])
_CONTENT_FIELDS = {
    "bytes_contents": st.lists(st.binary(max_size=20), max_size=4),
    "fp32_contents": st.lists(st.floats(width=32, allow_nan=True), max_size=4),
    "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    "bool_contents": st.lists(st.booleans(), max_size=4),
}
_PARAMETER_KEYS = st.sampled_from(["content_type", "headers", "x", "datatype", "id"])


@st.composite
def _infer_requests(draw) -> bytes:
    request = v2_grpc.ModelInferRequest(
        model_name=draw(st.sampled_from([MODEL, MODEL, "", "other"])),
        id=draw(st.text(max_size=10)),
    )
    for key in draw(st.lists(_PARAMETER_KEYS, max_size=2)):
        parameter = request.parameters[key]
        choice = draw(st.sampled_from(["string", "int", "bool"]))
        if choice == "string":
            parameter.string_param = draw(st.sampled_from(["np", "pd", "str", "base64", "x"]))
        elif choice == "int":
            parameter.int64_param = draw(st.integers(-5, 5))
        else:
            parameter.bool_param = draw(st.booleans())
    for index in range(draw(st.integers(0, 2))):
        tensor = request.inputs.add(
            name=f"in{index}",
            datatype=draw(_DATATYPES),
            shape=draw(st.lists(st.integers(-3, 2**33), max_size=3)),
        )
        field = draw(st.sampled_from(sorted(_CONTENT_FIELDS)))
        getattr(tensor.contents, field).extend(draw(_CONTENT_FIELDS[field]))
        if draw(st.booleans()):
            tensor.parameters["content_type"].string_param = draw(
                st.sampled_from(["np", "pd", "str", "base64", "x"])
            )
    request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=24), max_size=2)))
    return request.SerializeToString()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_infer_requests())
def test_grpc_arbitrary_infer_requests_never_get_a_server_error(grpc_client, body) -> None:
    code, details, _ = grpc_client.call(M, body)
    assert code not in SERVER_ERRORS, (v2_grpc.ModelInferRequest.FromString(body), details)
    assert grpc_client.live()


# -- the image model --------------------------------------------------------------------------


@pytest.mark.slow
def test_grpc_image_predictions_and_bad_images(mlserver_image_server) -> None:
    client = Client(_address(mlserver_image_server))
    try:
        images = known_images()
        stack = np.stack(list(images.values())).astype(np.float32)
        request = v2_grpc.ModelInferRequest(model_name="fashion-demo")
        tensor = request.inputs.add(name="image", datatype="FP32", shape=list(stack.shape))
        tensor.contents.fp32_contents.extend(stack.ravel().tolist())
        code, details, response = client.infer(request)
        assert code == OK and _outputs(response)["label"] == list(images), details
        raw = v2_grpc.ModelInferRequest(model_name="fashion-demo")
        raw.inputs.add(name="image", datatype="FP32", shape=list(stack.shape))
        raw.raw_input_contents.append(stack.astype("<f4").tobytes())
        code, details, response = client.infer(raw)
        assert code == OK and _outputs(response)["label"] == list(images), details
        for bad, reason in (
            (np.full((1, 28, 28), np.nan, dtype=np.float32), "BAD_VALUE"),
            (np.zeros((2, 27, 28), dtype=np.float32), "WRONG_SHAPE"),
        ):
            request = v2_grpc.ModelInferRequest(model_name="fashion-demo")
            tensor = request.inputs.add(name="image", datatype="FP32", shape=list(bad.shape))
            tensor.contents.fp32_contents.extend(bad.ravel().tolist())
            code, details, _ = client.infer(request)
            assert code == INVALID and details.startswith(reason), details
        assert client.live()
    finally:
        client.close()


# -- the installation, in MLServer's environment ------------------------------------------------

_INSTALL_SCRIPT = """
import json, types
from mlserver.errors import MLServerError
from mlserver.grpc import GRPCServer
from mlserver.grpc.utils import _grpc_status_code
from mlserver.settings import Settings
from cdl_gitlab.serving import mlserver_grpc

def codes():
    return {s: _grpc_status_code(MLServerError("x", s)).name for s in (400, 401, 413, 415, 503)}

before, bounds = codes(), {}
for configured in (None, 500, 99999):
    settings = Settings(metrics_endpoint=None, grpc_max_message_length=configured)
    server = types.SimpleNamespace(_grpc_server=GRPCServer(settings, None, None))
    mlserver_grpc.install(server, 1000)  # what it uses of an MLServer: its GRPCServer
    bounds[str(configured)] = settings.grpc_max_message_length
import logging
records = []
handler = logging.Handler()
handler.emit = records.append
grpc_log = logging.getLogger("mlserver.grpc")
grpc_log.addHandler(handler)
for status in (400, 404, 500):
    try:
        raise MLServerError(f"status {status}", status)
    except MLServerError as err:
        grpc_log.exception(err)
logged = [record.getMessage() for record in records]
print(json.dumps({"before": before, "after": codes(), "bounds": bounds, "logged": logged}))
"""


def test_install_bounds_messages_and_maps_mlserver_statuses(tmp_path) -> None:
    import os
    import subprocess
    from pathlib import Path

    from deploy_models import mlserver_executable

    import cdl_gitlab

    python = mlserver_executable().parent / "python"
    source = str(Path(cdl_gitlab.__file__).parents[1])  # this checkout's package
    result = subprocess.run(
        [str(python), "-c", _INSTALL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": source},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["before"] == {
        "400": "INVALID_ARGUMENT",
        "401": "UNKNOWN",
        "413": "UNKNOWN",
        "415": "UNKNOWN",
        "503": "UNKNOWN",
    }
    assert found["after"] == {
        "400": "INVALID_ARGUMENT",
        "401": "UNAUTHENTICATED",
        "413": "RESOURCE_EXHAUSTED",
        "415": "INVALID_ARGUMENT",
        "503": "UNAVAILABLE",
    }
    # twice max_request_bytes, unless a smaller bound is configured
    assert found["bounds"] == {"None": 2000, "500": 500, "99999": 2000}
    # MLServer's traceback of a client error is dropped (the runtime logs the refusal)
    assert found["logged"] == ["status 500"]
