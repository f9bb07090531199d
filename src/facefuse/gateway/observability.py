"""Seeing inside the gateway: a span, metrics and log fields for every call.

One gRPC server interceptor wraps each facefuse.v1 RPC, so the service code only says
what it alone knows (the request id, the tenant once authenticated) through
`note_call`:

- Traces (OpenTelemetry): a SERVER span per call, joined to the caller's trace when it
  sends `traceparent`; attributes RPC, tenant, template(s), request id and reason;
  events from `facefuse.gateway.triton`: `triton.attempt` for every Triton attempt
  (`why`: first, hedge or failover), `triton.unavailable` for an attempt a replica
  refused, `triton.answered` for the one that answered (with its `why`).
  The span's W3C trace context goes to Triton in the call's headers, and Triton
  started with `--trace-config mode=opentelemetry` (`server.triton.trace_flags`)
  hangs its ensemble and stage spans under it. Spans are exported over OTLP/HTTP to
  `otlp_traces_url`; unset (the default), no tracer exists and nothing is created.
- Metrics (Prometheus, own registry per gateway): calls by RPC and reason, latency
  histograms, calls in flight, shed calls, hedges sent and won, retries on another
  replica (failovers) and the calls they answered, per-replica readiness and load,
  per-tenant rate-limit hits; served on `metrics_host:metrics_port` (loopback by
  default).
- Logs: `JsonLogFormatter` writes one JSON object per line with the call's RPC,
  request id, tenant and trace id; API keys, bearer tokens and bytes are masked
  even if a message ever contained them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone

import grpc
from facefuse_client.errors import REASON_KEY
from facefuse_client.v1 import facefuse_pb2
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from facefuse.errors import Reason

SERVICE_NAME = facefuse_pb2.DESCRIPTOR.services_by_name["FaceFusion"].full_name
OK = "OK"
# Seconds; a poster takes ~0.1 s on a GPU, ~1 s on a loaded CPU; deadlines reach 120 s.
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 120.0)
PROPAGATOR = TraceContextTextMapPropagator()

log = logging.getLogger("facefuse.gateway")


# ---- the call being served -------------------------------------------------------------
@dataclass
class CallRecord:
    """What is known about the call this task serves; read by spans, metrics and logs."""

    rpc: str
    request_id: str = "-"
    tenant: str = "-"
    template_ids: tuple[str, ...] = ()
    span: trace.Span = field(default=trace.INVALID_SPAN, repr=False)


_CALL: ContextVar[CallRecord | None] = ContextVar("facefuse_gateway_call", default=None)


def current_call() -> CallRecord | None:
    return _CALL.get()


def note_call(*, request_id: str | None = None, tenant: str | None = None) -> None:
    """The service tells what the interceptor cannot see (the id it assigned, the tenant)."""
    call = _CALL.get()
    if call is None:
        return
    if request_id is not None:
        call.request_id = request_id
        call.span.set_attribute("facefuse.request_id", request_id)
    if tenant is not None:
        call.tenant = tenant
        call.span.set_attribute("facefuse.tenant", tenant)


def call_event(name: str, **attributes) -> None:
    """An event on the current call's span (Triton attempts, hedges, failovers)."""
    call = _CALL.get()
    if call is not None and call.span.is_recording():
        call.span.add_event(name, attributes)


def triton_headers() -> dict[str, str] | None:
    """W3C trace context for the Triton call, or None when the call is not traced.

    Triton traces every request that carries a context (it runs with rate=0 and
    traces nothing else), so only sampled spans propagate one."""
    call = _CALL.get()
    if call is None or not call.span.is_recording():
        return None
    headers: dict[str, str] = {}
    PROPAGATOR.inject(headers, context=trace.set_span_in_context(call.span))
    return headers


# ---- tracing ---------------------------------------------------------------------------
def tracer_provider(otlp_traces_url: str | None, service_name: str, sample_ratio: float):
    """An SDK provider exporting to the collector, or None: tracing off costs nothing."""
    if not otlp_traces_url:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_url)))
    return provider


# ---- metrics ---------------------------------------------------------------------------
class GatewayMetrics:
    """The gateway's series, on a registry of its own (several gateways share a test process)."""

    def __init__(self, pool) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("facefuse_gateway_calls", "Finished calls by RPC and reason (OK for success).",
                             ["rpc", "reason"], registry=r)
        self.latency = Histogram("facefuse_gateway_call_duration_seconds", "Call latency at the gateway, by RPC.",
                                 ["rpc"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.in_flight = Gauge("facefuse_gateway_calls_in_flight", "Calls being served, by RPC.", ["rpc"], registry=r)
        self.shed = Counter("facefuse_gateway_shed_calls",
                            "Calls refused with OVERLOADED because every replica's queue was full.", registry=r)
        self.rate_limited = Counter("facefuse_gateway_rate_limited_calls",
                                    "Calls refused with RATE_LIMITED, by tenant.", ["tenant"], registry=r)
        r.register(_PoolCollector(pool))
        for rpc in facefuse_pb2.DESCRIPTOR.services_by_name["FaceFusion"].methods_by_name:
            self.in_flight.labels(rpc)  # series exist from the start, at 0

    def finished(self, call: CallRecord, reason: str, duration_s: float) -> None:
        self.calls.labels(call.rpc, reason).inc()
        self.latency.labels(call.rpc).observe(duration_s)
        if reason == Reason.OVERLOADED.value:
            self.shed.inc()
        elif reason == Reason.RATE_LIMITED.value:
            self.rate_limited.labels(call.tenant).inc()


class _PoolCollector:
    """Reads the Triton pool's own counters at scrape time (no bookkeeping per call)."""

    def __init__(self, pool) -> None:
        self.pool = pool

    def collect(self):
        pool = self.pool
        yield CounterMetricFamily("facefuse_gateway_hedges_sent", "Slow calls also sent to a second replica.",
                                  value=pool.hedges_sent)
        yield CounterMetricFamily("facefuse_gateway_hedges_won", "Hedged calls answered first by their hedge "
                                  "(answers after a failover are counted apart).", value=pool.hedges_won)
        yield CounterMetricFamily("facefuse_gateway_retries",
                                  "Failovers: attempts sent to another replica after one failed with UNAVAILABLE "
                                  "(the channels' own transparent retries are not counted).", value=pool.failovers)
        yield CounterMetricFamily("facefuse_gateway_failovers_won",
                                  "Calls answered by an attempt sent to another replica after UNAVAILABLE.",
                                  value=pool.failovers_won)
        now = time.monotonic()
        ready = GaugeMetricFamily("facefuse_gateway_replica_ready",
                                  "1 when the replica answered its last readiness poll.", labels=["replica"])
        in_flight = GaugeMetricFamily("facefuse_gateway_replica_in_flight", "Calls outstanding on the replica.",
                                      labels=["replica"])
        cooling = GaugeMetricFamily("facefuse_gateway_replica_cooling",
                                    "1 while the replica is tried last after an UNAVAILABLE.", labels=["replica"])
        for replica in pool.replicas:
            ready.add_metric([replica.url], float(replica.ready))
            in_flight.add_metric([replica.url], float(replica.in_flight))
            cooling.add_metric([replica.url], float(replica.cooling(now)))
        yield from (ready, in_flight, cooling)


# ---- the interceptor -------------------------------------------------------------------
def _reason_of(context, error: BaseException) -> str:
    """The reason the service put in the trailing metadata, else the status code's name."""
    with contextlib.suppress(Exception):
        for key, value in context.trailing_metadata() or ():
            if key == REASON_KEY:
                return value
    if isinstance(error, Exception) and context.code() is not None:
        return context.code().name
    return "CANCELLED"


def _template_ids(request) -> tuple[str, ...]:
    if getattr(request, "template_ids", None):
        return tuple(request.template_ids)
    template_id = getattr(request, "template_id", "")
    return (template_id,) if template_id else ()


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GatewayMetrics, tracer: trace.Tracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or not details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        behavior, rpc = handler.unary_unary, details.method.rsplit("/", 1)[-1]

        async def observed(request, context):
            return await self._observe(rpc, behavior, request, context)

        return grpc.unary_unary_rpc_method_handler(observed, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    def _start_span(self, call: CallRecord, context):
        if self.tracer is None:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        parent = PROPAGATOR.extract(dict(context.invocation_metadata() or ()))
        attributes = {"rpc.system": "grpc", "rpc.service": SERVICE_NAME, "rpc.method": call.rpc}
        if call.template_ids:
            attributes["facefuse.template_ids"] = list(call.template_ids)
        return self.tracer.start_as_current_span(
            f"{SERVICE_NAME}/{call.rpc}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False)

    async def _observe(self, rpc: str, behavior, request, context):
        call = CallRecord(rpc, template_ids=_template_ids(request))
        token = _CALL.set(call)
        started = time.perf_counter()
        reason = OK
        self.metrics.in_flight.labels(rpc).inc()
        try:
            with self._start_span(call, context) as span:
                call.span = span
                try:
                    return await behavior(request, context)
                except BaseException as error:
                    reason = _reason_of(context, error)
                    raise
                finally:
                    span.set_attribute("facefuse.reason", reason)
                    if reason != OK:
                        span.set_status(trace.StatusCode.ERROR, reason)
        finally:
            self.metrics.in_flight.labels(rpc).dec()
            self.metrics.finished(call, reason, time.perf_counter() - started)
            _CALL.reset(token)


class Observability:
    """What one gateway needs: the interceptor, its metrics endpoint, its tracer provider."""

    def __init__(self, settings, pool) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics(pool)
        self.provider = tracer_provider(settings.otlp_traces_url, settings.trace_service_name,
                                        settings.trace_sample_ratio)
        tracer = self.provider.get_tracer("facefuse.gateway") if self.provider else None
        self.interceptor = ObservingInterceptor(self.metrics, tracer)
        self.metrics_port: int | None = None
        self._http = None

    def start(self, port: int | None) -> None:
        """Serve /metrics on `port` (0: a free one; None: not at all)."""
        if port is None:
            return
        self._http, _ = start_http_server(port, addr=self.settings.metrics_host, registry=self.metrics.registry)
        self.metrics_port = self._http.server_port
        log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host, self.metrics_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self.provider is not None:
            self.provider.shutdown()  # flushes spans not yet exported


# ---- logs ------------------------------------------------------------------------------
# Shapes of secrets: facefuse API keys, JWTs (three base64url parts, header starts eyJ),
# anything after "Bearer".
_SECRETS = re.compile(r"ffk_[A-Za-z0-9_\-]+|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*|(?i:bearer)\s+\S+")
_BYTES = re.compile(r"b(['\"])(?:\\x[0-9a-f]{2}|\\.|[^\\])*?\1")


def scrub(text: str) -> str:
    """Mask what must never reach a log: keys, tokens, and reprs of bytes (image data)."""
    return _BYTES.sub("<bytes>", _SECRETS.sub("<redacted>", text))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the call's RPC, request id, tenant and trace id."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        call = _CALL.get()
        if call is not None:
            entry.update(rpc=call.rpc, request_id=call.request_id, tenant=call.tenant)
            context = call.span.get_span_context()
            if context.is_valid:
                entry.update(trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x"))
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """The root logger writes JSON lines (`json`, for log collectors) or plain text."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
