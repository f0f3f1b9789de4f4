"""The request guard in front of MLServer's REST app (an ASGI middleware) and its launcher.

MLServer (1.7) decodes a body itself: a broken ``Content-Encoding: gzip`` body is a 500, and
it reads bodies of any size and nesting depth. Before MLServer sees a request, the guard
answers with a 4xx and a reason (``{"error": "REASON: ..."}``) and stores the rejection with
the model's runtime (:data:`cdl_gitlab.serving.mlserver_registry.RUNTIMES`):

- the model-repository API (load/unload a model) and the streaming routes: 404 (not served);
- a content encoding other than ``identity``: 415; a content type other than JSON: 415;
- a body larger than ``max_request_bytes``: 413 (before it is read); nested deeper than
  ``max_json_depth``, not UTF-8, not JSON: 400 (:func:`cdl_gitlab.serving.limits.decode_json`);
- an ``infer`` body that is not a V2 inference request (MLServer's own schema): 400.

:func:`main` is ``mlserver start <folder>`` with the guards installed: it loads the same
``settings.json`` / ``model-settings.json`` and starts the same server, adding the middleware
to MLServer's REST app and the gRPC guard (:mod:`cdl_gitlab.serving.mlserver_grpc`, which also
bounds gRPC messages by the artifact's ``max_request_bytes``) before it starts
(``python -m cdl_gitlab.serving.mlserver_guard``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from mlserver.types import InferenceRequest
from pydantic import ValidationError

from cdl_gitlab.serving.common import ARTIFACT_ENV, DEFAULT_LIMITS, limit
from cdl_gitlab.serving.limits import GuardLimits, decode_json
from cdl_gitlab.serving.mlserver_registry import RUNTIMES
from cdl_gitlab.serving.mlserver_runtime import FEEDBACK, MAX_ID_CHARS, PREDICT, error_text
from cdl_gitlab.serving.validation import (
    BAD_JSON,
    BAD_PAYLOAD,
    BAD_VALUE,
    TOO_LARGE,
    UNSUPPORTED_MEDIA,
    InvalidRequest,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MODEL_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/([a-z_]+)$")
_NOT_SERVED = re.compile(r"^/v2/(repository/.*|models/[^/]+(/versions/[^/]+)?/\w+_stream)$")
_NON_FINITE = re.compile(rb"(?<![\w\"])-?(NaN|Infinity)(?![\w\"])")
_DEFAULT = GuardLimits(
    max_bytes=int(DEFAULT_LIMITS["max_request_bytes"]),
    max_depth=int(DEFAULT_LIMITS["max_json_depth"]),
)


def route_kind(path: str) -> tuple[str | None, str | None]:
    """``(kind, model)`` of a guarded route: ``predict`` (``infer``, ``generate``),
    ``feedback``; ``(None, None)`` for every other path."""
    match = _MODEL_ROUTE.match(path)
    if match is None:
        return None, None
    action = match.group(2)
    if action in ("infer", "generate"):
        return PREDICT, match.group(1)
    if action == FEEDBACK:
        return FEEDBACK, match.group(1)
    return None, None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def check_headers(scope: Scope, limits: GuardLimits) -> None:
    """Encoding, content type and declared length of a guarded request."""
    encoding = _header(scope, b"content-encoding").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidRequest(
            UNSUPPORTED_MEDIA, f"content encoding {encoding} is not supported: send plain JSON", 415
        )
    content_type = _header(scope, b"content-type")
    mimetype, _, params = content_type.partition(";")
    mimetype = mimetype.strip().lower()
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise InvalidRequest(
            UNSUPPORTED_MEDIA,
            f"content type {mimetype} is not supported: send application/json",
            415,
        )
    charset = re.search(r"charset=([^;\s]+)", params, re.IGNORECASE)
    if charset and charset.group(1).strip('"').lower().replace("-", "") != "utf8":
        raise InvalidRequest(
            UNSUPPORTED_MEDIA, f"charset {charset.group(1)} is not supported: send UTF-8", 415
        )
    length = _header(scope, b"content-length")
    if length.isdigit() and int(length) > limits.max_bytes:
        raise InvalidRequest(
            TOO_LARGE,
            f"request body of {length} bytes; at most {limits.max_bytes} are allowed",
            413,
        )


def check_infer_body(body: bytes, limits: GuardLimits) -> None:
    """A decodable V2 inference request (size, depth, UTF-8, JSON, MLServer's schema).

    Decoded with ``orjson`` as MLServer decodes it, so what passes here MLServer decodes too
    (``NaN``/``Infinity``, which Python's json would take, are refused: values must be finite).
    """
    try:
        payload = decode_json(body, limits, "the request body", orjson.loads)
    except InvalidRequest as exc:
        if exc.reason == BAD_JSON and _NON_FINITE.search(body):
            raise InvalidRequest(
                BAD_VALUE, "the body holds NaN or Infinity: values must be finite JSON numbers"
            ) from None
        raise
    if not isinstance(payload, dict):
        raise InvalidRequest(BAD_PAYLOAD, "the request body must be a JSON object")
    request_id = payload.get("id")
    if isinstance(request_id, str) and len(request_id) > MAX_ID_CHARS:
        # MLServer sends the id back as a response header
        raise InvalidRequest(BAD_PAYLOAD, f"'id' is longer than {MAX_ID_CHARS} characters")
    try:
        InferenceRequest.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise InvalidRequest(BAD_PAYLOAD, f"not a V2 inference request ({problems})") from None


class RequestGuard:
    """ASGI middleware: every guarded request is checked before MLServer decodes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if _NOT_SERVED.match(path):
            await _answer(send, 404, f"NOT_SERVED: {path} is not served")
            return
        kind, model = route_kind(path)
        if kind is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        runtime = RUNTIMES.get(model or "")
        limits = getattr(runtime, "guard_limits", _DEFAULT)
        try:
            if runtime is not None:
                runtime.authorize(kind, _header(scope, b"authorization") or None)
            check_headers(scope, limits)
            body = await _read_body(receive, limits)
            if kind == PREDICT:
                check_infer_body(body, limits)
        except InvalidRequest as exc:
            if runtime is not None:
                runtime.record_rejection(kind, exc)
            await _answer(send, exc.status, error_text(exc))
            return
        await self.app(scope, _replay(body), send)


async def _read_body(receive: Receive, limits: GuardLimits) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest(BAD_PAYLOAD, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.max_bytes:
            raise InvalidRequest(
                TOO_LARGE, f"request body over {limits.max_bytes} bytes (the limit)", 413
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # as a client that keeps the connection open
        return {"type": "http.disconnect"}

    return receive


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def max_request_bytes(models: list[Any]) -> int:
    """The largest ``max_request_bytes`` of the served artifacts (their manifests, read before
    the models load; the default for one that cannot be read: its load fails anyway)."""
    from cdl_gitlab.deploy.artifact import read_manifest
    from cdl_gitlab.errors import CDLError

    found = []
    for model in models:
        parameters = getattr(model, "parameters", None)
        uri = getattr(parameters, "uri", None) or os.environ.get(ARTIFACT_ENV, "/mnt/models")
        try:
            found.append(limit(read_manifest(Path(uri)), "max_request_bytes"))
        except (CDLError, ValueError):
            found.append(_DEFAULT.max_bytes)
    return max(found, default=_DEFAULT.max_bytes)


async def serve(folder: str) -> None:
    """``mlserver start <folder>`` with :class:`RequestGuard` in front of the REST app and
    :class:`cdl_gitlab.serving.mlserver_grpc.GrpcGuard` in front of the gRPC services."""
    from mlserver import MLServer
    from mlserver.cli.serve import load_settings

    from cdl_gitlab.serving import mlserver_grpc

    settings, models = await load_settings(folder)
    server = MLServer(settings)  # configures MLServer's logger
    # CDL's own lines (what is served, where scoring data goes, each refused request) in the
    # same log and format as MLServer's
    cdl_log = logging.getLogger("cdl_gitlab")
    cdl_log.setLevel(logging.INFO)
    for handler in logging.getLogger("mlserver").handlers:
        if handler not in cdl_log.handlers:
            cdl_log.addHandler(handler)
    # MLServer has no hook for REST middleware: its REST server's app, before it starts
    server._rest_server._app.add_middleware(RequestGuard)
    mlserver_grpc.install(server, max_request_bytes(models))
    await server.start(models)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m cdl_gitlab.serving.mlserver_guard <settings folder>\n")
        return 2
    asyncio.run(serve(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
