"""Request validation without a server: every bad-input class and its reason."""

from __future__ import annotations

import numpy as np
import pytest

from cdl_gitlab.serving import validation as v


def _reason(call, *args) -> str:
    with pytest.raises(v.InvalidRequest) as info:
        call(*args)
    assert info.value.message
    return info.value.reason


def test_texts() -> None:
    assert v.parse_texts(np.array(["a b", "c"]), 4, 10) == ["a b", "c"]
    assert v.parse_texts("one text", 4, 10) == ["one text"]
    assert v.parse_texts(np.array("zero-d"), 4, 10) == ["zero-d"]
    assert v.parse_texts(["x", "y"], 4, 10) == ["x", "y"]
    assert _reason(v.parse_texts, np.array([]), 4, 10) == v.EMPTY_INPUT
    assert _reason(v.parse_texts, np.array(["ok", " "]), 4, 10) == v.EMPTY_INPUT
    assert _reason(v.parse_texts, np.array([1, 2]), 4, 10) == v.NOT_TEXT
    assert _reason(v.parse_texts, ["x", 3], 4, 10) == v.NOT_TEXT
    assert _reason(v.parse_texts, b"bytes", 4, 10) == v.NOT_TEXT
    assert _reason(v.parse_texts, {"text": "x"}, 4, 10) == v.WRONG_TYPE
    assert _reason(v.parse_texts, np.array([["a"], ["b"]]), 4, 10) == v.WRONG_SHAPE
    assert _reason(v.parse_texts, np.array(["a"] * 5), 4, 10) == v.TOO_MANY_ITEMS
    assert _reason(v.parse_texts, np.array(["x" * 11]), 4, 10) == v.TEXT_TOO_LONG


def test_images() -> None:
    shape = (28, 28)
    one = v.parse_images(np.zeros(shape), shape, 4)
    assert len(one) == 1 and one[0].shape == shape and one[0].dtype == np.float32
    assert len(v.parse_images(np.zeros((3, 28, 28, 1)), shape, 4)) == 3
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 255, dtype=np.uint8)).save(buffer, format="PNG")
    decoded = v.parse_images(buffer.getvalue(), shape, 4)
    assert decoded[0].shape == shape and float(decoded[0].min()) == 1.0
    assert _reason(v.parse_images, b"\x89PNG\r\n\x1a\n" + b"0" * 10, shape, 4) == v.BAD_IMAGE
    with pytest.raises(v.InvalidRequest, match="28x28") as info:
        v.parse_images(np.zeros((2, 27, 28)), shape, 4)
    assert info.value.reason == v.WRONG_SHAPE
    assert _reason(v.parse_images, np.zeros((0, 28, 28)), shape, 4) == v.EMPTY_INPUT
    assert _reason(v.parse_images, np.array([["a"] * 28] * 28), shape, 4) == v.WRONG_TYPE
    assert _reason(v.parse_images, "text", shape, 4) == v.WRONG_TYPE
    assert _reason(v.parse_images, np.full((1, 28, 28), np.nan), shape, 4) == v.BAD_VALUE
    assert _reason(v.parse_images, -np.ones((1, 28, 28)), shape, 4) == v.BAD_VALUE
    assert _reason(v.parse_images, np.zeros((5, 28, 28)), shape, 4) == v.TOO_MANY_ITEMS
    assert _reason(v.parse_images, b"GIF89a....", shape, 4) == v.BAD_IMAGE


def test_payload_structure() -> None:
    v.check_payload({"data": {"ndarray": [[1, 2], [3, 4]]}})
    v.check_payload({"strData": "x"})
    v.check_payload({"data": {"tensor": {"shape": [2], "values": [1, 2]}}})
    assert _reason(v.check_payload, {"data": {"ndarray": [[1, 2], [3]]}}) == v.WRONG_SHAPE
    assert _reason(v.check_payload, {"data": {"tensor": {"shape": [3], "values": [1]}}}) == (
        v.WRONG_SHAPE
    )
    assert _reason(v.check_payload, {"data": {"tensor": {"values": [1]}}}) == v.BAD_PAYLOAD
    assert _reason(v.check_payload, {"data": {}}) == v.EMPTY_INPUT
    assert _reason(v.check_payload, {"data": [1]}) == v.BAD_PAYLOAD
    assert _reason(v.check_payload, {}) == v.BAD_PAYLOAD
    assert _reason(v.check_payload, [1, 2]) == v.BAD_PAYLOAD


def test_message_types_before_numpy_coerces_them() -> None:
    from cdl_gitlab.serving.validation import check_message

    check_message({"data": {"ndarray": ["a", "b"]}}, "text")
    check_message({"strData": "a"}, "text")
    check_message({"data": {"ndarray": [[0, 0.5]]}}, "image")
    assert _reason(check_message, {"data": {"ndarray": ["a text", 5]}}, "text") == v.NOT_TEXT
    assert _reason(check_message, {"data": {"ndarray": [[0.5, "a"]]}}, "image") == v.WRONG_TYPE
    assert _reason(check_message, {"data": {"ndarray": [[0.5, True]]}}, "image") == v.WRONG_TYPE
    assert _reason(check_message, {"data": None}, "text") == v.BAD_PAYLOAD
    assert _reason(check_message, {"strData": 5}, "text") == v.BAD_PAYLOAD
    assert _reason(check_message, {"binData": "%%"}, "image") == v.BAD_PAYLOAD
    assert _reason(check_message, {"strData": "a", "meta": []}, "text") == v.BAD_PAYLOAD
    tensor = {"tensor": {"shape": [1, 2], "values": [1, 2]}, "names": "x"}
    assert _reason(check_message, {"data": tensor}, "image") == v.BAD_PAYLOAD


def test_json_depth_and_decoding_bounds() -> None:
    from cdl_gitlab.serving.limits import GuardLimits, decode_json, json_depth

    assert json_depth(b'{"a": [[1], {"b": "[[[[["}]}') == 3
    assert json_depth(b"[" * 20_000) == 20_000
    assert json_depth(b"5") == 0
    assert json_depth(b"[[1], [2], [3]]", at_most=5) == 4  # a bound, from a count
    assert json_depth(b"[[1], [2], [3]]", at_most=3) == 2
    limits = GuardLimits(max_bytes=100, max_depth=3)
    assert decode_json(b'{"a": [[1]]}', limits, "body") == {"a": [[1]]}
    assert _reason(decode_json, b"[[[[1]]]]", limits, "body") == v.TOO_DEEP
    assert _reason(decode_json, b"[" + b"1," * 60 + b"1]", limits, "body") == v.TOO_LARGE
    assert _reason(decode_json, b'"\xe9"', limits, "body") == v.BAD_ENCODING
    assert _reason(decode_json, b"{", limits, "body") == v.BAD_JSON
    assert _reason(decode_json, "1" * 5000, GuardLimits(10_000, 3), "body") == v.BAD_JSON


def test_bearer_token() -> None:
    v.check_bearer("Bearer s3cret", "s3cret")
    v.check_bearer("bearer  s3cret ", "s3cret")
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret"):
        with pytest.raises(v.InvalidRequest) as info:
            v.check_bearer(header, "s3cret")
        assert info.value.status == 401 and info.value.reason == v.UNAUTHORIZED


def test_feedback_token_from_the_named_variable(monkeypatch) -> None:
    v.check_feedback_token(None, None)  # no token variable named: feedback is open
    monkeypatch.delenv("CDL_TEST_FEEDBACK_TOKEN", raising=False)
    with pytest.raises(v.InvalidRequest) as info:
        v.check_feedback_token("CDL_TEST_FEEDBACK_TOKEN", "Bearer anything")
    assert info.value.status == 503 and info.value.reason == v.NO_FEEDBACK_TOKEN
    assert "CDL_TEST_FEEDBACK_TOKEN" in info.value.message
    monkeypatch.setenv("CDL_TEST_FEEDBACK_TOKEN", "s3cret")
    v.check_feedback_token("CDL_TEST_FEEDBACK_TOKEN", "Bearer s3cret")
    with pytest.raises(v.InvalidRequest) as info:
        v.check_feedback_token("CDL_TEST_FEEDBACK_TOKEN", "Bearer wrong")
    assert info.value.status == 401
