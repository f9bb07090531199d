"""Refusing a call from its metadata, before its request is read.

grpc.aio reads and parses a unary call's request before its handler runs, so a call
refused in the handler has already paid for copying and parsing its photo: under
callers that retry at once, that cost, not Triton, bounds goodput. This interceptor
serves every unary method of facefuse.v1 through a client-streaming handler instead,
which gets the call before any message is read. From the metadata and the deadline
alone it authenticates the caller (exactly one credential), checks the method's scope,
takes the tenant's quota and, for calls that go to Triton, checks that the deadline
and one more Triton call fit. A refused call is answered at once, its message never
read; an admitted one reads its request and runs the real handler (inside the
observing interceptor's span and metrics) holding its quota place until it ends.

Refusals keep their typed reasons, retry-after hints and metrics; they get no span, and
their log lines are thinned to a few a second per reason, so a retry storm cannot turn
into a logging storm.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import grpc
from facefuse_client.v1 import facefuse_pb2

from facefuse.errors import OptionError
from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, Principal
from facefuse.gateway.beauty import BEAUTIFY_ENSEMBLE
from facefuse.gateway.errors import GatewayError, status_for
from facefuse.gateway.observability import CallRecord, GatewayMetrics
from facefuse.gateway.guard import ADMITTED
from facefuse.gateway.service import FaceFusionService

log = logging.getLogger("facefuse.gateway")

PHOTO_SERVICE = facefuse_pb2.DESCRIPTOR.services_by_name["FaceFusion"].full_name
VIDEO_SERVICE = facefuse_pb2.DESCRIPTOR.services_by_name["VideoJobs"].full_name
# Refusal lines logged per reason and second; the rest are counted into the next line.
LOGGED_REFUSALS_PER_S = 5


@dataclass(frozen=True)
class Gate:
    scope: str
    # The Triton model sequences a call of the method may need (one photo into one
    # face; several photos, or several templates): none for methods that call no model.
    routes: tuple[tuple[str, ...], ...] = ()


ANALYSED = ("face_analyze", "face_fuse")
GATES = {
    f"/{PHOTO_SERVICE}/Fuse": Gate(SCOPE_FUSE, (("face_fusion",), ANALYSED)),
    f"/{PHOTO_SERVICE}/FuseMany": Gate(SCOPE_FUSE, (ANALYSED,)),
    f"/{PHOTO_SERVICE}/Beautify": Gate(SCOPE_FUSE, ((BEAUTIFY_ENSEMBLE,),)),
    f"/{PHOTO_SERVICE}/ListTemplates": Gate(SCOPE_TEMPLATES),
    f"/{VIDEO_SERVICE}/SubmitVideoJob": Gate(SCOPE_FUSE),
    f"/{VIDEO_SERVICE}/GetVideoJob": Gate(SCOPE_FUSE),
    f"/{VIDEO_SERVICE}/CancelVideoJob": Gate(SCOPE_FUSE),
    f"/{VIDEO_SERVICE}/ReadVideoResult": Gate(SCOPE_FUSE),
    f"/{VIDEO_SERVICE}/ListVideoTemplates": Gate(SCOPE_TEMPLATES),
}


class RefusalLog:
    """At most `per_s` lines a second for each reason; the lines left out are counted
    into the next one logged, so nothing goes unseen and the metrics stay exact."""

    def __init__(self, per_s: int = LOGGED_REFUSALS_PER_S, clock=time.monotonic):
        self.per_s, self._clock = per_s, clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # reason: (second, logged, left out)

    def line(self, reason: str) -> int | None:
        """None: leave this refusal out; else log it, with this many left out before it."""
        second = float(int(self._clock()))
        start, logged, left_out = self._windows.get(reason, (second, 0, 0))
        if start != second:
            logged = 0
        if logged >= self.per_s:
            self._windows[reason] = (second, logged, left_out + 1)
            return None
        self._windows[reason] = (second, logged + 1, 0)
        return left_out


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Put it before the observing interceptor: it wraps the handler that one returns."""

    def __init__(self, service: FaceFusionService, metrics: GatewayMetrics | None = None):
        self.service, self.metrics = service, metrics
        self.refusals = RefusalLog()

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        gate = GATES.get(details.method)
        if handler is None or gate is None:
            return handler
        rpc = details.method.rsplit("/", 1)[-1]
        counted = details.method.startswith(f"/{PHOTO_SERVICE}/")  # the metrics cover FaceFusion only
        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary(request_iterator, context):
                async with self._admitted(rpc, gate, counted, context) as request:
                    return await behavior(request, context)

            return grpc.stream_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            stream_behavior = handler.unary_stream

            async def stream(request_iterator, context):
                async with self._admitted(rpc, gate, counted, context) as request:
                    async for reply in stream_behavior(request, context):
                        yield reply

            return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return handler

    @contextlib.asynccontextmanager
    async def _admitted(self, rpc: str, gate: Gate, counted: bool, context):
        """The call's request, read once the caller is admitted; its quota place and its
        principal (ADMITTED, for the call guard) held until the call ends."""
        principal, place = await self._admit(rpc, gate, counted, context)
        with place:
            request = await self._read(context)
            token = ADMITTED.set(principal)
            try:
                yield request
            finally:
                ADMITTED.reset(token)

    async def _admit(self, rpc: str, gate: Gate, counted: bool, context) -> tuple[Principal, contextlib.ExitStack]:
        """The caller and its quota place (held until the stack closes); a refusal aborts
        the call here, before anything is read."""
        started = time.perf_counter()
        principal: Principal | None = None
        place = contextlib.ExitStack()
        try:
            service = self.service
            principal = service.auth.authenticate(context.invocation_metadata() or ())
            principal.require(gate.scope)
            place.enter_context(service.quotas.admit(principal))
            if gate.routes:
                service.refuse_if_full(context, gate.routes)
        except GatewayError as error:
            place.close()
            self._count(rpc, counted, principal, error, started)
            await context.abort_with_status(status_for(error, context.time_remaining()))
        return principal, place

    def _count(self, rpc: str, counted: bool, principal: Principal | None, error: GatewayError, started: float) -> None:
        tenant = principal.tenant if principal else "-"
        elapsed_s = time.perf_counter() - started
        if counted and self.metrics is not None:
            self.metrics.finished(CallRecord(rpc, tenant=tenant), error.reason.value, elapsed_s)
        left_out = self.refusals.line(error.reason.value)
        if left_out is not None:
            more = f" ({left_out} more {error.reason.value} not logged)" if left_out else ""
            log.info("%s %s tenant=%s before reading the request: %s %.1f ms%s", rpc, error.reason.value, tenant,
                     error.detail, elapsed_s * 1000, more)

    @staticmethod
    async def _read(context):
        """The call's one request message (as the method's own deserializer made it)."""
        request = await context.read()
        if request is grpc.aio.EOF:
            await context.abort_with_status(status_for(OptionError("the call carries no request message")))
        return request
