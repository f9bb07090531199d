"""Pure logic of the gateway's observability: scrubbing, JSON log lines, switches."""

from __future__ import annotations

import json
import logging

import jwt

from facefuse.gateway.auth import new_key
from facefuse.gateway.observability import (
    _CALL, CallRecord, JsonLogFormatter, Observability, note_call, scrub, triton_headers,
)
from facefuse.gateway.settings import GatewaySettings
from facefuse.server.triton import trace_flags


class NoReplicas:
    replicas, hedges_sent, hedges_won, failovers, failovers_won = [], 0, 0, 0, 0


def log_line(message: str, *args) -> dict:
    record = logging.LogRecord("facefuse.gateway", logging.INFO, __file__, 1, message, args, None)
    return json.loads(JsonLogFormatter().format(record))


def test_scrub_masks_api_keys_jwts_bearer_tokens_and_bytes():
    key = new_key()
    token = jwt.encode({"sub": "svc", "tenant": "acme"}, "a-secret-of-at-least-thirty-two-bytes!!", algorithm="HS256")
    photo = b"\xff\xd8\xff\xe0JFIF"
    text = scrub(f"key {key} token {token} header Bearer abc.def photo {photo!r} done")
    assert key not in text and token not in text and "abc.def" not in text and "JFIF" not in text
    assert text.startswith("key <redacted> token <redacted> header <redacted> photo <bytes> done")


def test_json_log_line_has_the_call_fields_and_no_secret():
    token = _CALL.set(CallRecord("Fuse"))
    try:
        note_call(request_id="req-42", tenant="acme")
        entry = log_line("Fuse failed for %s", new_key())
    finally:
        _CALL.reset(token)
    assert entry["rpc"] == "Fuse" and entry["request_id"] == "req-42" and entry["tenant"] == "acme"
    assert entry["message"] == "Fuse failed for <redacted>"
    assert entry["level"] == "INFO" and entry["logger"] == "facefuse.gateway"
    assert "trace_id" not in entry  # tracing off: no span, no trace id


def test_log_lines_outside_a_call_have_no_call_fields():
    entry = log_line("metrics on %s", "http://127.0.0.1:9464/metrics")
    assert "request_id" not in entry and "rpc" not in entry


def test_tracing_off_creates_no_tracer_and_sends_no_trace_headers():
    observability = Observability(GatewaySettings(triton_urls=["127.0.0.1:1"]), NoReplicas())
    assert observability.provider is None and observability.interceptor.tracer is None
    token = _CALL.set(CallRecord("Fuse"))
    try:
        assert triton_headers() is None
    finally:
        _CALL.reset(token)


def test_tracing_on_creates_a_tracer_exporting_to_the_collector():
    settings = GatewaySettings(triton_urls=["127.0.0.1:1"], otlp_traces_url="http://127.0.0.1:9/v1/traces")
    observability = Observability(settings, NoReplicas())
    try:
        assert observability.interceptor.tracer is not None
    finally:
        observability.provider.shutdown()  # no span was made: nothing to send


def test_a_traced_call_sends_the_w3c_trace_context_of_its_span():
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("call") as span:
        token = _CALL.set(CallRecord("Fuse", span=span))
        try:
            headers = triton_headers()
        finally:
            _CALL.reset(token)
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled: Triton traces it
    assert trace_id == format(span.get_span_context().trace_id, "032x")
    assert span_id == format(span.get_span_context().span_id, "016x")


def test_metrics_endpoint_binds_loopback_by_default():
    assert GatewaySettings().metrics_host == "127.0.0.1"


def test_triton_trace_flags_only_when_a_collector_is_set():
    assert trace_flags(None) == [] and trace_flags("") == []
    flags = trace_flags("http://collector:4318/v1/traces")
    settings = flags[1::2]
    assert flags[0::2] == ["--trace-config"] * len(settings)
    assert "mode=opentelemetry" in settings and "rate=0" in settings
    assert "opentelemetry,url=http://collector:4318/v1/traces" in settings
