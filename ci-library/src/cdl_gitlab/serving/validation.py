"""Validation of prediction requests: every bad input becomes an :class:`InvalidRequest`
with a machine-readable reason and a message that says what was wrong."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cdl_gitlab.errors import CDLError

MAX_IMAGE_BYTES = 5_000_000
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")

EMPTY_INPUT = "EMPTY_INPUT"
WRONG_TYPE = "WRONG_TYPE"
WRONG_SHAPE = "WRONG_SHAPE"
NOT_TEXT = "NOT_TEXT"
TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
TEXT_TOO_LONG = "TEXT_TOO_LONG"
BAD_VALUE = "BAD_VALUE"
BAD_IMAGE = "BAD_IMAGE"
BAD_PAYLOAD = "BAD_PAYLOAD"
BAD_JSON = "BAD_JSON"
BAD_ENCODING = "BAD_ENCODING"
BAD_FEEDBACK = "BAD_FEEDBACK"
TOO_DEEP = "TOO_DEEP"
TOO_LARGE = "TOO_LARGE"
UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA_TYPE"
UNAUTHORIZED = "UNAUTHORIZED"
NO_FEEDBACK_TOKEN = "NO_FEEDBACK_TOKEN"


class InvalidRequest(CDLError):
    """A client error (HTTP ``status``, 400 unless said): ``reason`` is a constant above."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def _leaves(value: Any) -> Iterator[Any]:
    """The non-list values of nested lists (depth is bounded before decoding)."""
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_message(payload: Any, task: str) -> None:
    """The JSON types of a decoded prediction request, for a ``text`` or ``image`` model.

    Catches what numpy would silently coerce (``["a text", 5]`` becomes two strings) and what
    Seldon's decoding would turn into a 500 (a ``strData`` that is a number, ``meta`` that
    is not an object); shapes, counts and values are checked by :func:`parse_texts` and
    :func:`parse_images`.
    """
    if isinstance(payload, dict) and "data" in payload and payload["data"] is None:
        raise InvalidRequest(BAD_PAYLOAD, "'data' is null: send data.ndarray or data.tensor")
    check_payload(payload)
    if "meta" in payload and not isinstance(payload["meta"], dict):
        raise InvalidRequest(BAD_PAYLOAD, "'meta' must be an object")
    data = payload.get("data")
    if data is None:
        for key in ("strData", "binData"):
            if key in payload and not isinstance(payload[key], str):
                raise InvalidRequest(BAD_PAYLOAD, f"'{key}' must be a string")
        if "binData" in payload and "strData" not in payload and "jsonData" not in payload:
            try:
                base64.b64decode(payload["binData"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest(BAD_PAYLOAD, "binData is not valid base64") from None
        return
    names = data.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRequest(BAD_PAYLOAD, "data.names must be a list of strings")
    if "tensor" not in data:
        values, where = data["ndarray"], "data.ndarray"
    else:
        values, where = data["tensor"]["values"], "data.tensor.values"
        shape = data["tensor"]["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise InvalidRequest(BAD_PAYLOAD, "data.tensor.shape must be a list of sizes")
    for index, value in enumerate(_leaves(values)):
        if task == "text" and not isinstance(value, str):
            raise InvalidRequest(
                NOT_TEXT,
                f"{where}: value {index} is {_json_type(value)}, not text (this is a text "
                "model: send strings only)",
            )
        if task != "text" and not _is_number(value):
            raise InvalidRequest(
                WRONG_TYPE,
                f"{where}: value {index} is {_json_type(value)}; this is an image model: "
                "expected numbers (pixel values)",
            )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object"


def check_feedback(payload: Any) -> None:
    """A feedback message Seldon can parse (its protobuf decoding errors would be 500s)."""
    from seldon_core.utils import json_to_feedback

    if not isinstance(payload, dict):
        raise InvalidRequest(BAD_FEEDBACK, "the feedback must be a JSON object")
    try:
        json_to_feedback(payload)
    except Exception as exc:  # protobuf's ParseError and what it wraps
        raise InvalidRequest(BAD_FEEDBACK, f"not a Seldon feedback message: {exc}") from None


def check_payload(request: Any) -> None:
    """Structural checks Seldon's JSON decoding would otherwise turn into a 500."""
    if not isinstance(request, dict):
        raise InvalidRequest(BAD_PAYLOAD, "the request body must be a JSON object")
    data = request.get("data")
    if data is None:
        if not any(key in request for key in ("strData", "binData", "jsonData")):
            raise InvalidRequest(
                BAD_PAYLOAD, "the request has no data: send data.ndarray, data.tensor or strData"
            )
        return
    if not isinstance(data, dict):
        raise InvalidRequest(BAD_PAYLOAD, "'data' must be an object with 'ndarray' or 'tensor'")
    if "tensor" in data:  # Seldon looks for 'tensor' first
        tensor = data["tensor"]
        if not isinstance(tensor, dict) or "values" not in tensor or "shape" not in tensor:
            raise InvalidRequest(BAD_PAYLOAD, "data.tensor needs 'shape' and 'values'")
        try:
            np.array(tensor["values"]).reshape(tensor["shape"])
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                WRONG_SHAPE, f"data.tensor values do not fit its shape: {exc}"
            ) from None
    elif "ndarray" in data:
        values = data["ndarray"]
        if isinstance(values, list) and not any(isinstance(value, list) for value in values):
            return  # a flat list cannot be ragged (and copying long texts into numpy costs)
        try:
            np.array(values)
        except ValueError as exc:
            raise InvalidRequest(
                WRONG_SHAPE, f"data.ndarray is ragged (rows of different lengths): {exc}"
            ) from None
    else:
        raise InvalidRequest(
            EMPTY_INPUT, "'data' holds neither 'ndarray' nor 'tensor': nothing to predict"
        )


def _check_count(count: int, max_batch: int) -> None:
    if count == 0:
        raise InvalidRequest(EMPTY_INPUT, "the request holds no items to predict")
    if count > max_batch:
        raise InvalidRequest(
            TOO_MANY_ITEMS, f"{count} items in one request; at most {max_batch} are allowed"
        )


def parse_texts(X: Any, max_batch: int, max_chars: int) -> list[str]:
    """The texts of a request: ``strData``, or a 1-D ``ndarray``/list of strings."""
    if isinstance(X, bytes | bytearray):
        raise InvalidRequest(NOT_TEXT, "this is a text model: send strData or strings, not binData")
    if isinstance(X, str):
        items: Sequence[Any] = [X]
    elif isinstance(X, dict):
        raise InvalidRequest(
            WRONG_TYPE, "this is a text model: send data.ndarray as a list of strings or strData"
        )
    else:
        array = np.asarray(X, dtype=object if isinstance(X, list) else None)
        if array.size == 0:
            raise InvalidRequest(EMPTY_INPUT, "the request holds no texts to predict")
        if array.dtype.kind in "biufc":
            raise InvalidRequest(NOT_TEXT, "this is a text model: got numbers, expected strings")
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim != 1:
            raise InvalidRequest(
                WRONG_SHAPE,
                f"expected a flat list of texts, got an array of shape {tuple(array.shape)}",
            )
        items = list(array)
    _check_count(len(items), max_batch)
    texts: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, np.str_ | str):
            text = str(item)
        else:
            raise InvalidRequest(
                NOT_TEXT, f"item {index} is {type(item).__name__}, not text (this is a text model)"
            )
        if not text.strip():
            raise InvalidRequest(EMPTY_INPUT, f"item {index} is an empty text")
        if len(text) > max_chars:
            raise InvalidRequest(
                TEXT_TOO_LONG,
                f"item {index} has {len(text)} characters; at most {max_chars} are allowed",
            )
        texts.append(text)
    return texts


def parse_images(X: Any, shape: tuple[int, ...], max_batch: int) -> list[Any]:
    """The images of a request: arrays of ``shape`` (0..1 or 0..255), or one PNG/JPEG."""
    expected = "x".join(str(n) for n in shape)
    dims = ", ".join(str(n) for n in shape)
    if isinstance(X, bytes | bytearray):
        if len(X) > MAX_IMAGE_BYTES:
            raise InvalidRequest(
                TOO_MANY_ITEMS, f"image of {len(X)} bytes; at most {MAX_IMAGE_BYTES} are allowed"
            )
        if not X.startswith(IMAGE_MAGIC):
            raise InvalidRequest(BAD_IMAGE, "binData is not a PNG or JPEG image")
        from cdl_gitlab.features.image import ImageDecoder

        try:  # decoded here, with the model's own decoder, so a broken file is a 400
            return [ImageDecoder(*shape).decode(bytes(X))]
        except ValueError as exc:
            raise InvalidRequest(BAD_IMAGE, f"binData: {exc}") from None
    if isinstance(X, str | dict):
        raise InvalidRequest(
            WRONG_TYPE,
            f"this is an image model: send data.ndarray of {expected} pixel arrays "
            "or a PNG as binData",
        )
    try:
        array = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidRequest(
            WRONG_TYPE, f"this is an image model: expected numbers ({expected} pixel arrays)"
        ) from None
    if array.size == 0:
        raise InvalidRequest(EMPTY_INPUT, "the request holds no images")
    if array.shape == shape:
        array = array[np.newaxis]
    if array.ndim == len(shape) + 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise InvalidRequest(
            WRONG_SHAPE,
            f"expected images of shape {expected} (an array of shape (n, {dims})), "
            f"got shape {tuple(np.shape(X))}",
        )
    _check_count(array.shape[0], max_batch)
    if not np.isfinite(array).all():
        raise InvalidRequest(BAD_VALUE, "pixel values must be finite numbers (got NaN or inf)")
    if array.min() < 0 or array.max() > 255:
        raise InvalidRequest(BAD_VALUE, "pixel values must be in 0..1 (or 0..255)")
    return [image.astype(np.float32) for image in array]


def check_bearer(authorization: str | None, token: str) -> None:
    """``Authorization: Bearer <token>`` with the expected token (constant-time comparison)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise InvalidRequest(
            UNAUTHORIZED, "feedback needs a token: send 'Authorization: Bearer <token>'", 401
        )
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise InvalidRequest(UNAUTHORIZED, "the feedback token is not valid", 401)


def check_feedback_token(token_env: str | None, authorization: str | None) -> None:
    """Feedback needs ``Authorization: Bearer <token>`` when the artifact names the token's
    environment variable (``serving.feedback_token_env``): 401 without the right token, 503
    when the variable is not set on the server (feedback is then closed to everyone)."""
    if token_env is None:
        return
    token = os.environ.get(token_env, "")
    if not token:
        raise InvalidRequest(
            NO_FEEDBACK_TOKEN,
            f"feedback is closed: the token variable {token_env} is not set on the model server",
            503,
        )
    check_bearer(authorization, token)
