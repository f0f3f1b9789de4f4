"""Bounds on a request body checked before it is decoded: size, JSON nesting depth, UTF-8.

Engine-neutral (no web framework): the Seldon guard (:mod:`cdl_gitlab.serving.guard`) and the
MLServer guard (:mod:`cdl_gitlab.serving.mlserver_guard`) both decode bodies with
:func:`decode_json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cdl_gitlab.serving.validation import (
    BAD_ENCODING,
    BAD_JSON,
    TOO_DEEP,
    TOO_LARGE,
    InvalidRequest,
)

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


@dataclass(frozen=True)
class GuardLimits:
    max_bytes: int
    """Largest request body (bytes); larger gets a 413 before it is read."""
    max_depth: int
    """Deepest nesting of JSON arrays and objects; deeper gets a 400 before decoding."""


def json_depth(raw: bytes, at_most: int | None = None) -> int:
    """Deepest nesting of ``[`` / ``{`` in a JSON text, strings skipped; cheap (no decoding).

    An unterminated string is not skipped, so its brackets count: never an underestimate.
    With ``at_most``, a text with no more than that many opening brackets returns their
    count (an upper bound of the depth) without the exact scan.
    """
    opening = len(raw) - len(raw.translate(None, b"[{"))
    if at_most is not None and opening <= at_most:
        return opening
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    codes = np.frombuffer(brackets, dtype=np.uint8)
    if codes.size == 0:
        return 0
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(max(np.cumsum(steps).max(), 0))


def decode_json(
    raw: bytes | str,
    limits: GuardLimits,
    what: str,
    loads: Callable[[str], Any] = json.loads,
) -> Any:
    """``raw`` decoded as UTF-8 JSON by ``loads`` (any decoder whose errors are ValueErrors),
    after the size and depth bounds."""
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
    if len(data) > limits.max_bytes:
        raise InvalidRequest(
            TOO_LARGE, f"{what}: {len(data)} bytes; at most {limits.max_bytes} are allowed", 413
        )
    depth = json_depth(data, at_most=limits.max_depth)
    if depth > limits.max_depth:
        raise InvalidRequest(
            TOO_DEEP,
            f"{what}: JSON nested at least {depth} levels deep; at most "
            f"{limits.max_depth} are allowed",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(BAD_ENCODING, f"{what} is not UTF-8 text: {exc}") from None
    try:
        return loads(text)
    except ValueError as exc:
        raise InvalidRequest(BAD_JSON, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # cannot pass the depth bound; kept so no decoder error is a 500
        raise InvalidRequest(TOO_DEEP, f"{what}: JSON nested too deeply") from None
