"""The request guard in front of MLServer's gRPC services (a ``grpc.aio`` server interceptor).

MLServer (1.7) decodes a ``ModelInfer`` request itself before the model runs: a message that
is not protobuf, or raw input contents that do not unpack (a length prefix past the buffer, a
size that does not match the shape), is an ``INTERNAL`` error, and its errors with a status
other than 400/404/422/500 become ``UNKNOWN``. :class:`GrpcGuard` answers every such request
with a client-error status and the reason in the details (``BAD_PAYLOAD: ...``), stores the
rejection with the model's runtime (:data:`cdl_gitlab.serving.mlserver_registry.RUNTIMES`),
and hands MLServer only requests it can read:

- the model-repository methods (index, load, unload; both services) and the streaming
  ``ModelStreamInfer``: ``NOT_FOUND`` (``NOT_SERVED``), as their REST routes' 404;
- a request message that is not protobuf (any method): ``INVALID_ARGUMENT``;
- ``ModelInfer``: a model that is not served, ``NOT_FOUND``; larger than the artifact's
  ``max_request_bytes``, ``RESOURCE_EXHAUSTED`` (``TOO_LARGE``); an ``id`` MLServer could not
  send back as metadata (over 256 characters, not printable ASCII) or inputs MLServer cannot
  convert (raw contents), ``INVALID_ARGUMENT``. The runtime's own checks then apply as over
  REST (``NOT_TEXT``, ``WRONG_SHAPE``, ``BAD_ENCODING``... as ``INVALID_ARGUMENT``).

gRPC itself refuses a message over :func:`message_limit` (``RESOURCE_EXHAUSTED``, before any
of this code runs, so not a scoring row); :func:`install` sets it and the interceptor, and
keeps MLServer's gRPC log to one line per refused request (:class:`ClientErrorLogFilter`).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from mlserver.errors import MLServerError
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import utils as grpc_utils
from mlserver.grpc.converters import ModelInferRequestConverter
from mlserver.grpc.logging import gRPCLoggerName

from cdl_gitlab.serving.common import DEFAULT_LIMITS
from cdl_gitlab.serving.mlserver_registry import RUNTIMES
from cdl_gitlab.serving.mlserver_runtime import MAX_ID_CHARS, PREDICT, error_text
from cdl_gitlab.serving.validation import BAD_PAYLOAD, TOO_LARGE, InvalidRequest

INFERENCE = "/inference.GRPCInferenceService/"
MODEL_INFER = INFERENCE + "ModelInfer"
REPOSITORY = "/inference.model_repository.ModelRepositoryService/"
NOT_SERVED = frozenset(
    INFERENCE + name
    for name in (
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "ModelStreamInfer",
    )
)
NOT_SERVED_REASON = "NOT_SERVED"
UNKNOWN_MODEL = "NOT_FOUND"

# HTTP status of an InvalidRequest / MLServerError -> gRPC status code
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def grpc_code(status: int) -> grpc.StatusCode:
    """The gRPC status code of an HTTP status (any other 4xx: ``INVALID_ARGUMENT``)."""
    if status in GRPC_CODES:
        return GRPC_CODES[status]
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def _max_bytes(runtime: Any) -> int:
    limits = getattr(runtime, "guard_limits", None)
    return limits.max_bytes if limits else int(DEFAULT_LIMITS["max_request_bytes"])


def message_limit(max_request_bytes: int) -> int:
    """gRPC's own bound on a message: twice the artifact's limit, so a request over the limit
    (up to twice it) still reaches the guard and is stored as a ``TOO_LARGE`` rejection."""
    return 2 * max_request_bytes


def _sole_runtime() -> Any:
    """The runtime an unreadable request is recorded with: the only model served, if one."""
    runtimes = list(RUNTIMES.values())
    return runtimes[0] if len(runtimes) == 1 else None


def _metadata(context: aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item[0].lower() == key:
            value = item[1]
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


async def _refuse(context: aio.ServicerContext, exc: InvalidRequest, runtime: Any) -> None:
    if runtime is not None:
        runtime.record_rejection(PREDICT, exc)
    await context.abort(grpc_code(exc.status), error_text(exc))


def read_infer_request(raw: bytes) -> pb.ModelInferRequest:
    """The ``ModelInferRequest`` of a message (:class:`InvalidRequest` if it is not one)."""
    try:
        return pb.ModelInferRequest.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidRequest(BAD_PAYLOAD, f"not a ModelInferRequest message ({exc})") from None


def check_infer_request(request: pb.ModelInferRequest, size: int, runtime: Any) -> None:
    """Size, id and convertibility of a ``ModelInfer`` request for ``runtime``."""
    if size > _max_bytes(runtime):
        raise InvalidRequest(
            TOO_LARGE,
            f"request message of {size} bytes; at most {_max_bytes(runtime)} are allowed",
            413,
        )
    if len(request.id) > MAX_ID_CHARS or not all(" " <= char <= "~" for char in request.id):
        # MLServer sends the id back as gRPC metadata: printable ASCII only
        raise InvalidRequest(
            BAD_PAYLOAD, f"'id' must be at most {MAX_ID_CHARS} printable ASCII characters"
        )
    try:
        ModelInferRequestConverter.to_types(request)
    except Exception as exc:  # whatever MLServer's converter raises: a 400
        raise InvalidRequest(
            BAD_PAYLOAD,
            f"the inputs cannot be read ({type(exc).__name__}: {exc}); raw_input_contents "
            "needs one entry per input, packed as the datatype and shape say",
        ) from None


class GrpcGuard(aio.ServerInterceptor):
    """Every gRPC request is checked before MLServer decodes it (see the module docstring)."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # gRPC answers UNIMPLEMENTED
        if method in NOT_SERVED or method.startswith(REPOSITORY):
            return _not_served(method, handler)
        if method == MODEL_INFER and handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guarded_infer(handler.unary_unary),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None and handler.request_deserializer is not None:
            return grpc.unary_unary_rpc_method_handler(
                _decoded(handler.unary_unary, handler.request_deserializer, method),
                response_serializer=handler.response_serializer,
            )
        return handler


def _not_served(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    exc = InvalidRequest(NOT_SERVED_REASON, f"{method} is not served", 404)

    async def refuse(request: Any, context: aio.ServicerContext) -> None:
        await context.abort(grpc_code(exc.status), error_text(exc))

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def _decoded(
    behavior: Callable[..., Awaitable[Any]],
    deserializer: Callable[[bytes], Any],
    method: str,
) -> Callable[[bytes, aio.ServicerContext], Awaitable[Any]]:
    """``behavior`` taking the raw message: one that is not protobuf is ``INVALID_ARGUMENT``."""

    async def call(raw: bytes, context: aio.ServicerContext) -> Any:
        try:
            request = deserializer(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{BAD_PAYLOAD}: not a request message of {method} ({exc})",
            )
        return await behavior(request, context)

    return call


def _guarded_infer(
    behavior: Callable[..., Awaitable[Any]],
) -> Callable[[bytes, aio.ServicerContext], Awaitable[Any]]:
    async def infer(raw: bytes, context: aio.ServicerContext) -> Any:
        runtime = _sole_runtime()
        try:
            request = read_infer_request(raw)
            runtime = RUNTIMES.get(request.model_name)
            if runtime is None:
                raise InvalidRequest(
                    UNKNOWN_MODEL, f"no model {request.model_name!r} is served", 404
                )
            runtime.authorize(PREDICT, _metadata(context, "authorization"))
            check_infer_request(request, len(raw), runtime)
        except InvalidRequest as exc:
            await _refuse(context, exc, runtime)
        return await behavior(request, context)

    return infer


class ClientErrorLogFilter(logging.Filter):
    """Drops the traceback MLServer's gRPC services log for every ``MLServerError`` (its
    ``handle_mlserver_error`` calls ``logger.exception``) when the error is the client's
    (a 4xx status): the runtime has logged the refusal in one line already, and a client
    sending bad requests would otherwise fill the log with stack traces. Server errors keep
    theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, MLServerError) and 400 <= error.status_code < 500)


def _guarded_aio(real: types.ModuleType, guard: GrpcGuard) -> types.SimpleNamespace:
    """``grpc.aio`` as MLServer's gRPC module sees it while it builds its server: the same,
    with :class:`GrpcGuard` first among the server's interceptors."""

    def server(*args: Any, interceptors: Any = (), **kwargs: Any) -> aio.Server:
        return real.server(*args, interceptors=[guard, *(interceptors or ())], **kwargs)

    return types.SimpleNamespace(server=server)


def install(mlserver: Any, max_request_bytes: int) -> None:
    """Put :class:`GrpcGuard` in front of ``mlserver``'s gRPC services and bound its messages
    (:func:`message_limit`), before the server starts.

    MLServer has no hook for gRPC interceptors: its ``GRPCServer._create_server`` builds the
    ``grpc.aio`` server (with MLServer's own interceptors) when the server starts; for that
    one call, its module's ``aio`` adds the guard. MLServer's status mapping gets the codes
    of the statuses it lacks (413, 401, 503...), which it would report as ``UNKNOWN``.
    """
    from mlserver.grpc import server as grpc_server_module

    for status, code in GRPC_CODES.items():
        grpc_utils.STATUS_CODE_MAPPING.setdefault(status, code)
    grpc_log = logging.getLogger(gRPCLoggerName)
    if not any(isinstance(item, ClientErrorLogFilter) for item in grpc_log.filters):
        grpc_log.addFilter(ClientErrorLogFilter())
    grpc_server = mlserver._grpc_server
    settings = grpc_server._settings
    bound = message_limit(max_request_bytes)
    if settings.grpc_max_message_length is None or settings.grpc_max_message_length > bound:
        settings.grpc_max_message_length = bound
    create = grpc_server._create_server
    guard = GrpcGuard()

    def create_guarded() -> aio.Server:
        real = grpc_server_module.aio
        grpc_server_module.aio = _guarded_aio(real, guard)
        try:
            return create()
        finally:
            grpc_server_module.aio = real

    grpc_server._create_server = create_guarded
