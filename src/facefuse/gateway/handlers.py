"""Register a facefuse.v1 service on a gRPC server, refusing malformed request bodies.

Like the generated add_<Service>Servicer_to_server, except that a request whose bytes do
not parse as its message gets INVALID_ARGUMENT with a reason instead of a bare UNKNOWN
(the generated deserializer raises, and grpc answers that with no detail).
"""

from __future__ import annotations

import grpc
from facefuse_client.v1 import facefuse_pb2
from google.protobuf.message import DecodeError

from facefuse.errors import OptionError
from facefuse.gateway.errors import status_for


class _Malformed:
    """What a request deserializes to when its bytes are not the message they should be."""

    def __init__(self, message_name: str):
        self.message_name = message_name


def _lenient(message_class):
    def deserialize(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError:
            return _Malformed(message_class.DESCRIPTOR.full_name)

    return deserialize


async def _abort_if_malformed(request, context) -> None:
    if isinstance(request, _Malformed):
        error = OptionError(f"the request body is not a valid {request.message_name} message")
        await context.abort_with_status(status_for(error))


def _refusing_malformed(method):
    async def handle(request, context):
        await _abort_if_malformed(request, context)
        return await method(request, context)

    return handle


def _refusing_malformed_stream(method):
    """The same for a server-streaming method (an async generator)."""
    async def handle(request, context):
        await _abort_if_malformed(request, context)
        async for reply in method(request, context):
            yield reply

    return handle


def add_service(servicer, server, service: str) -> None:
    """Register `servicer`'s methods for the facefuse.v1 service named `service`."""
    descriptor = facefuse_pb2.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in descriptor.methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name}: client streaming is not supported here")
        wrap, handler = (_refusing_malformed_stream, grpc.unary_stream_rpc_method_handler) if method.server_streaming \
            else (_refusing_malformed, grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = handler(
            wrap(getattr(servicer, method.name)),
            request_deserializer=_lenient(getattr(facefuse_pb2, method.input_type.name)),
            response_serializer=getattr(facefuse_pb2, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
