"""A V2 / Open Inference Protocol gRPC client for the tests, without MLServer's stubs.

The test environment cannot import MLServer (its own environment), so the messages the tests
send are built here with ``google.protobuf`` from the field numbers of MLServer's
``dataplane.proto`` (package ``inference``; the subset the tests use), and calls go through a
generic ``grpc`` channel: ``call(method, bytes)`` sends any bytes as the request message.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

INFERENCE = "/inference.GRPCInferenceService/"
REPOSITORY = "/inference.model_repository.ModelRepositoryService/"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_STRING, _BYTES, _BOOL, _MESSAGE = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL, _F.TYPE_MESSAGE
_INT32, _INT64, _UINT32, _UINT64 = _F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32, _F.TYPE_UINT64
_FLOAT, _DOUBLE = _F.TYPE_FLOAT, _F.TYPE_DOUBLE


def _message(
    name: str, fields: list[tuple], nested: tuple[descriptor_pb2.DescriptorProto, ...] = ()
) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, label, *type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name[0]
    message.nested_type.extend(nested)
    return message


def _parameters_entry() -> descriptor_pb2.DescriptorProto:
    entry = _message(
        "ParametersEntry",
        [
            ("key", 1, _STRING, _OPTIONAL),
            ("value", 2, _MESSAGE, _OPTIONAL, ".inference.InferParameter"),
        ],
    )
    entry.options.map_entry = True
    return entry


def _parameters(number: int, owner: str) -> tuple:
    return ("parameters", number, _MESSAGE, _REPEATED, f".inference.{owner}.ParametersEntry")


def _tensor(name: str, owner: str) -> descriptor_pb2.DescriptorProto:
    return _message(
        name,
        [
            ("name", 1, _STRING, _OPTIONAL),
            ("datatype", 2, _STRING, _OPTIONAL),
            ("shape", 3, _INT64, _REPEATED),
            _parameters(4, f"{owner}.{name}"),
            ("contents", 5, _MESSAGE, _OPTIONAL, ".inference.InferTensorContents"),
        ],
        (_parameters_entry(),),
    )


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="cdl_tests_v2_dataplane.proto", package="inference", syntax="proto3"
    )
    contents = [
        ("bool_contents", 1, _BOOL),
        ("int_contents", 2, _INT32),
        ("int64_contents", 3, _INT64),
        ("uint_contents", 4, _UINT32),
        ("uint64_contents", 5, _UINT64),
        ("fp32_contents", 6, _FLOAT),
        ("fp64_contents", 7, _DOUBLE),
        ("bytes_contents", 8, _BYTES),
    ]
    name_version = [("name", 1, _STRING, _OPTIONAL), ("version", 2, _STRING, _OPTIONAL)]
    repository = [
        ("repository_name", 1, _STRING, _OPTIONAL),
        ("model_name", 2, _STRING, _OPTIONAL),
    ]
    file.message_type.extend(
        [
            _message(
                "InferParameter",
                [
                    ("bool_param", 1, _BOOL, _OPTIONAL),
                    ("int64_param", 2, _INT64, _OPTIONAL),
                    ("string_param", 3, _STRING, _OPTIONAL),
                ],
            ),
            _message("InferTensorContents", [(n, i, k, _REPEATED) for n, i, k in contents]),
            _message(
                "ModelInferRequest",
                [
                    ("model_name", 1, _STRING, _OPTIONAL),
                    ("model_version", 2, _STRING, _OPTIONAL),
                    ("id", 3, _STRING, _OPTIONAL),
                    _parameters(4, "ModelInferRequest"),
                    (
                        "inputs",
                        5,
                        _MESSAGE,
                        _REPEATED,
                        ".inference.ModelInferRequest.InferInputTensor",
                    ),
                    ("raw_input_contents", 7, _BYTES, _REPEATED),
                ],
                (_parameters_entry(), _tensor("InferInputTensor", "ModelInferRequest")),
            ),
            _message(
                "ModelInferResponse",
                [
                    ("model_name", 1, _STRING, _OPTIONAL),
                    ("model_version", 2, _STRING, _OPTIONAL),
                    ("id", 3, _STRING, _OPTIONAL),
                    _parameters(4, "ModelInferResponse"),
                    (
                        "outputs",
                        5,
                        _MESSAGE,
                        _REPEATED,
                        ".inference.ModelInferResponse.InferOutputTensor",
                    ),
                    ("raw_output_contents", 6, _BYTES, _REPEATED),
                ],
                (_parameters_entry(), _tensor("InferOutputTensor", "ModelInferResponse")),
            ),
            _message("ModelReadyRequest", name_version),
            _message("ModelReadyResponse", [("ready", 1, _BOOL, _OPTIONAL)]),
            _message("ServerLiveResponse", [("live", 1, _BOOL, _OPTIONAL)]),
            _message("RepositoryModelLoadRequest", repository),
            _message("RepositoryModelUnloadRequest", repository),
        ]
    )
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    names = [
        "InferParameter",
        "InferTensorContents",
        "ModelInferRequest",
        "ModelInferResponse",
        "ModelReadyRequest",
        "ModelReadyResponse",
        "ServerLiveResponse",
        "RepositoryModelLoadRequest",
        "RepositoryModelUnloadRequest",
    ]
    descriptors = {name: pool.FindMessageTypeByName(f"inference.{name}") for name in names}
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4
        return {n: message_factory.GetMessageClass(d) for n, d in descriptors.items()}
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(d) for n, d in descriptors.items()}


MESSAGES = _classes()
InferParameter = MESSAGES["InferParameter"]
InferTensorContents = MESSAGES["InferTensorContents"]
ModelInferRequest = MESSAGES["ModelInferRequest"]
ModelInferResponse = MESSAGES["ModelInferResponse"]
ModelReadyRequest = MESSAGES["ModelReadyRequest"]
ModelReadyResponse = MESSAGES["ModelReadyResponse"]
ServerLiveResponse = MESSAGES["ServerLiveResponse"]
RepositoryModelLoadRequest = MESSAGES["RepositoryModelLoadRequest"]
RepositoryModelUnloadRequest = MESSAGES["RepositoryModelUnloadRequest"]


def text_request(
    model: str, texts: list[Any], datatype: str = "BYTES", shape: list[int] | None = None
) -> Any:
    """A ``ModelInferRequest`` with one BYTES input of ``texts`` (str items are UTF-8 encoded)."""
    request = ModelInferRequest(model_name=model)
    tensor = request.inputs.add(
        name="text", datatype=datatype, shape=shape if shape is not None else [len(texts)]
    )
    tensor.contents.bytes_contents.extend(
        [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    )
    return request


def pack_bytes(items: list[bytes]) -> bytes:
    """Raw input contents of a BYTES tensor: each item behind its 4-byte little-endian length."""
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


class Client:
    """Unary calls to a V2 gRPC server: ``call`` sends bytes, answers ``(code, details, bytes)``."""

    def __init__(self, address: str, max_message: int = 64 * 1024 * 1024) -> None:
        options = [
            ("grpc.max_send_message_length", max_message),
            ("grpc.max_receive_message_length", max_message),
        ]
        self.channel = grpc.insecure_channel(address, options=options)

    def call(
        self,
        method: str,
        body: bytes,
        timeout: float = 30.0,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> tuple[grpc.StatusCode, str, bytes]:
        stub = self.channel.unary_unary(method)  # no (de)serializers: bytes in, bytes out
        try:
            answer = stub(body, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", b""
        return grpc.StatusCode.OK, "", answer

    def infer(self, request: Any) -> tuple[grpc.StatusCode, str, Any]:
        code, details, answer = self.call(INFERENCE + "ModelInfer", request.SerializeToString())
        return code, details, ModelInferResponse.FromString(answer) if answer else None

    def live(self) -> bool:
        code, _, answer = self.call(INFERENCE + "ServerLive", b"", timeout=10.0)
        return code == grpc.StatusCode.OK and ServerLiveResponse.FromString(answer).live

    def close(self) -> None:
        self.channel.close()
