"""The HTTP guard of the Seldon component: every request is checked before Seldon decodes it.

Seldon Core's Flask app (1.18) decodes bodies itself and answers anything it did not expect
with a 500 (a form field ``json=`` that is not JSON, JSON nested thousands of levels deep, a
wrong method, a body that protobuf cannot parse). The component hands Seldon a Flask
blueprint (Seldon registers ``model_error_handler`` on its app) whose ``before_app_request``
hook reads the body the way Seldon will, bounded in size and nesting depth *before* decoding,
and answers a bad request with a 4xx and a reason; HTTP errors (404, 405, 413) get the same
JSON shape instead of Seldon's catch-all 500. The decoded JSON body is left in Flask's cache,
so Seldon does not decode it a second time. The blueprint also puts
:class:`~cdl_gitlab.serving.metrics.BufferedMetrics` in front of Seldon's metrics store.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from cdl_gitlab.serving.limits import GuardLimits, decode_json
from cdl_gitlab.serving.metrics import BufferedMetrics, buffer_app_metrics
from cdl_gitlab.serving.validation import (
    BAD_ENCODING,
    BAD_JSON,
    TOO_LARGE,
    UNSUPPORTED_MEDIA,
    InvalidRequest,
)

log = logging.getLogger(__name__)

PREDICT_PATHS = frozenset({"/predict", "/api/v1.0/predictions", "/api/v0.1/predictions"})
FEEDBACK_PATHS = frozenset({"/send-feedback", "/api/v1.0/feedback", "/api/v0.1/feedback"})
NOT_SERVED_PATHS = frozenset(
    {"/transform-input", "/transform-output", "/route", "/aggregate", "/seldon.json"}
)
PREDICT = "predict"
FEEDBACK = "feedback"
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class GuardedModel(Protocol):
    """What the guard needs from the component."""

    guard_limits: GuardLimits

    def authorize(self, kind: str, authorization: str | None) -> None:
        """Raise :class:`InvalidRequest` (401) if a ``kind`` route needs a token it lacks."""

    def check_request(self, kind: str, payload: Any) -> None:
        """Raise :class:`InvalidRequest` if the decoded ``payload`` of a ``kind`` route is bad."""

    def record_rejection(self, kind: str, exc: InvalidRequest) -> None:
        """Count and store one rejected request (never raises)."""

    def attach_metrics(self, sink: BufferedMetrics) -> None:
        """Send metrics to ``sink`` directly instead of with each response."""


def read_payload(limits: GuardLimits) -> Any:
    """The request's JSON message, taken from where Seldon's ``get_request`` takes it."""
    length = request.content_length
    if length is not None and length > limits.max_bytes:
        raise InvalidRequest(
            TOO_LARGE,
            f"request body of {length} bytes; at most {limits.max_bytes} are allowed",
            413,
        )
    mimetype = request.mimetype
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset.replace("-", "") != "utf8":
        raise InvalidRequest(
            UNSUPPORTED_MEDIA, f"charset {charset} is not supported: send UTF-8", 415
        )
    if mimetype == "multipart/form-data":
        payload: dict[str, Any] = {}
        for key, value in request.form.items():
            payload[key] = value if key == "strData" else decode_json(value, limits, key)
        for key, upload in request.files.items():
            if key != "binData":
                content = upload.read()
                upload.seek(0)
                try:
                    payload[key] = content.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidRequest(
                        BAD_ENCODING, f"file field {key} is not UTF-8 text"
                    ) from None
            else:
                payload[key] = ""
        if not payload:
            raise InvalidRequest(BAD_JSON, "the multipart form has no fields")
        return payload
    form_json = request.form.get("json") if mimetype in FORM_TYPES else None
    source = form_json or request.args.get("json")
    if source:
        return decode_json(source, limits, "the 'json' field")
    if mimetype in FORM_TYPES:
        raise InvalidRequest(BAD_JSON, "the form has no (non-empty) 'json' field")
    if mimetype and mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise InvalidRequest(
            UNSUPPORTED_MEDIA,
            f"content type {mimetype} is not supported: send application/json (or a form "
            "field json=)",
            415,
        )
    payload = decode_json(request.get_data(cache=True), limits, "the request body")
    request._cached_json = (payload, payload)  # Seldon's request.get_json() reads this
    return payload


def _error(status: int, reason: str, message: str) -> Response:
    response = jsonify({"status": {"status": 1, "info": message, "code": -1, "reason": reason}})
    response.status_code = status
    return response


def make_guard(model: GuardedModel, name: str = "cdl_guard") -> Blueprint:
    """The blueprint Seldon registers: request checks, JSON HTTP errors, app settings."""
    guard = Blueprint(name, __name__)

    @guard.record_once
    def _configure(state: Any) -> None:
        app: Flask = state.app
        app.config["MAX_CONTENT_LENGTH"] = model.guard_limits.max_bytes

    buffered: list[bool] = []  # Seldon adds its routes after registering the blueprint

    def _buffer_metrics() -> None:
        buffered.append(True)
        view = current_app.view_functions.get("Predict")
        sink = buffer_app_metrics(view) if view is not None else None
        if sink is None:
            log.warning("Seldon's metrics store not found: metrics are updated per request")
        else:
            model.attach_metrics(sink)

    @guard.before_app_request
    def _check() -> Response | None:
        if not buffered:
            _buffer_metrics()
        path = request.path.rstrip("/") or "/"
        if path in NOT_SERVED_PATHS:
            return _error(
                404, "NOT_SERVED", f"{path} is not served by a model: use /api/v1.0/predictions"
            )
        kind = PREDICT if path in PREDICT_PATHS else FEEDBACK if path in FEEDBACK_PATHS else None
        rule = request.url_rule
        if rule is not None and rule.endpoint == "static":
            # Seldon's app serves its working folder (the wrapper, the artifact) to any GET
            if kind is not None:
                response = _error(405, "METHOD_NOT_ALLOWED", f"{path} takes POST only")
                response.headers["Allow"] = "POST"
                return response
            return _error(404, "NOT_FOUND", f"no such route: {path}")
        if kind is None or request.routing_exception is not None:
            return None  # routing answers 404/405 through the handler below
        try:
            model.authorize(kind, request.headers.get("Authorization"))
            payload = read_payload(model.guard_limits)
            model.check_request(kind, payload)
        except InvalidRequest as exc:
            model.record_rejection(kind, exc)
            response = _error(exc.status, exc.reason, exc.message)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    @guard.app_errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 400
        reason = (exc.name or "HTTP error").upper().replace(" ", "_")
        response = _error(code, reason, exc.description or exc.name)
        for header, value in exc.get_headers():
            if header.lower() == "allow":  # a 405 says which methods the route takes
                response.headers[header] = value
        return response

    return guard
