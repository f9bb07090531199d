"""Traces, metrics and logs of a real gateway in front of a real Triton.

A Triton started with its OpenTelemetry tracer and the gateway with tracing on both
export OTLP/HTTP to a receiver in this process, so one trace can be read back whole:
the gateway's span with Triton's request, ensemble, stage and compute spans under it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from facefuse_client import AuthError, FacefuseClient, InvalidPhotoError, RetryableError
from gateway_helpers import TEMPLATE, gateway_settings
from otlp_receiver import OtlpReceiver
from prometheus_client.parser import text_string_to_metric_families

from facefuse.gateway.observability import JsonLogFormatter
from facefuse.gateway.server import GatewayThread
from facefuse.server.triton import embedded_triton

CALLS_TO_TRACE = 5  # all five lost (Triton loses ~1 in 12): about 1 run in 250,000


def fusion_steps(triton) -> set[str]:
    """face_fusion's steps on the profile this server runs (the cpu profile has fewer)."""
    client = triton.client()
    try:
        return {s["model_name"] for s in client.get_model_config("face_fusion", as_json=True)["config"]
                ["ensemble_scheduling"]["step"]}
    finally:
        client.close()


@pytest.fixture(scope="module")
def receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def traced_triton(settings, built_repository, template_store, receiver):
    with embedded_triton(settings.model_copy(update={"triton_otlp_traces_url": receiver.url})) as server:
        yield server


@pytest.fixture(scope="module")
def traced_gateway(credentials, traced_triton, receiver):
    settings = gateway_settings(credentials, [traced_triton.grpc_url], otlp_traces_url=receiver.url)
    with GatewayThread(settings, port=0) as gateway:
        yield gateway


@contextlib.contextmanager
def json_log_lines():
    """Lines the gateway logs while the block runs, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("facefuse")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[str] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        lines += stream.getvalue().splitlines()


def wait_for(condition, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def series(samples, name: str, **labels) -> list[float]:
    """Values of `name` (the parser reports Triton's counters as <name>_total)."""
    return [v for (n, l), v in samples.items() if n in (name, f"{name}_total") and set(labels.items()) <= set(l)]


def test_one_trace_holds_the_gateway_span_and_tritons_ensemble_and_stage_spans(
        traced_gateway, traced_triton, credentials, receiver, grace_hopper):
    def gateway_span(request_id):
        return next((s for s in receiver.spans if s["service"] == "facefuse-gateway"
                     and s["attributes"].get("facefuse.request_id") == request_id), None)

    stages = fusion_steps(traced_triton)

    def triton_spans(trace_id):
        spans = [s for s in receiver.trace(trace_id) if s["service"] == "facefuse-triton"]
        models = {s["attributes"].get("triton.model_name") for s in spans}
        return spans if {"face_fusion"} | stages <= models else None

    # Triton 2.51 exports nothing for about one traced call in twelve (each of them reached
    # it with its context: checked with the headers the gateway sent), so another call may
    # stand in for a lost one; a gateway that does not propagate its context fails them all.
    spans = None
    with FacefuseClient(f"127.0.0.1:{traced_gateway.port}", api_key=credentials.full_key) as client:
        for attempt in range(CALLS_TO_TRACE):
            client.fuse(grace_hopper, TEMPLATE, request_id=f"trace-me-{attempt}")
            span = wait_for(lambda: gateway_span(f"trace-me-{attempt}"))
            assert span, "the gateway exported no span for the call"
            spans = wait_for(lambda: triton_spans(span["trace_id"]), timeout_s=20.0)
            if spans:
                break
    assert span["name"] == "facefuse.v1.FaceFusion/Fuse"
    assert span["attributes"]["facefuse.tenant"] == "tenant-full"
    assert span["attributes"]["facefuse.template_ids"] == [TEMPLATE]
    assert span["attributes"]["facefuse.reason"] == "OK"
    assert "triton.attempt" in [name for name, _ in span["events"]]
    seen = [(s["name"], s["attributes"].get("triton.model_name")) for s in receiver.trace(span["trace_id"])]
    triton_total = sum(s["service"] == "facefuse-triton" for s in receiver.spans)
    assert spans, (f"Triton's ensemble and stage spans did not join the gateway's trace in {CALLS_TO_TRACE} calls; "
                   f"spans of the last: {seen}; Triton spans received in all: {triton_total}; receiver errors: "
                   f"{receiver.errors}; Triton's log:\n{traced_triton.log_tail(30)}")
    by_id = {s["span_id"]: s for s in receiver.trace(span["trace_id"])}
    # Triton's request span hangs under the gateway's span, the ensemble under it, each
    # stage under the ensemble, and a compute span under each stage.
    request = next(s for s in spans if s["name"] == "InferRequest")
    assert request["parent_id"] == span["span_id"]
    ensemble = next(s for s in spans if s["attributes"].get("triton.model_name") == "face_fusion")
    assert ensemble["parent_id"] == request["span_id"]
    for stage in stages:
        model_span = next(s for s in spans if s["attributes"].get("triton.model_name") == stage)
        assert model_span["parent_id"] == ensemble["span_id"], stage
        assert any(s["name"] == "compute" and s["parent_id"] == model_span["span_id"] for s in spans), stage
    assert all(s["parent_id"] in by_id for s in spans)


def test_gateway_and_triton_metrics_show_the_calls_made(traced_gateway, traced_triton, credentials, grace_hopper,
                                                        coffee):
    target = f"127.0.0.1:{traced_gateway.port}"
    with FacefuseClient(target, api_key=credentials.full_key) as client:
        client.fuse(grace_hopper, TEMPLATE)
        with pytest.raises(InvalidPhotoError):
            client.fuse(coffee, TEMPLATE)  # no face
    with FacefuseClient(target, api_key=credentials.rate_limited_key) as slow:
        with pytest.raises(RetryableError) as refused:
            for _ in range(3):  # a burst of 2, then RATE_LIMITED
                slow.list_templates()
    assert refused.value.reason == "RATE_LIMITED"

    # gRPC sends a refusal's status before the gateway's handler unwinds and counts it, so
    # the caller can be told before the series move: scrape until the last call shows.
    def counted():
        samples = scrape(f"http://127.0.0.1:{traced_gateway.metrics_port}/metrics")
        limited = series(samples, "facefuse_gateway_rate_limited_calls_total", tenant="tenant-slow")
        idle = series(samples, "facefuse_gateway_calls_in_flight", rpc="ListTemplates") == [0.0]
        return samples if limited and idle else None

    gateway = wait_for(counted, timeout_s=10.0)
    assert gateway, "the gateway's metrics never counted the refused call"
    assert series(gateway, "facefuse_gateway_calls_total", rpc="Fuse", reason="OK")[0] >= 1
    assert series(gateway, "facefuse_gateway_calls_total", rpc="Fuse", reason="NO_FACE_DETECTED")[0] >= 1
    assert series(gateway, "facefuse_gateway_calls_total", rpc="ListTemplates", reason="RATE_LIMITED")[0] >= 1
    assert series(gateway, "facefuse_gateway_rate_limited_calls_total", tenant="tenant-slow")[0] >= 1
    assert series(gateway, "facefuse_gateway_call_duration_seconds_count", rpc="Fuse")[0] >= 2
    assert series(gateway, "facefuse_gateway_call_duration_seconds_bucket", rpc="Fuse", le="+Inf")
    assert series(gateway, "facefuse_gateway_calls_in_flight", rpc="Fuse") == [0.0]
    assert series(gateway, "facefuse_gateway_replica_ready", replica=traced_triton.grpc_url) == [1.0]
    assert series(gateway, "facefuse_gateway_replica_in_flight", replica=traced_triton.grpc_url) == [0.0]
    for name in ("facefuse_gateway_shed_calls_total", "facefuse_gateway_hedges_sent_total",
                 "facefuse_gateway_hedges_won_total", "facefuse_gateway_retries_total"):
        assert series(gateway, name) == [0.0], name

    triton = scrape(traced_triton.metrics_url)
    assert series(triton, "nv_inference_request_success", model="face_fusion")[0] >= 1
    for stage in fusion_steps(traced_triton):
        assert series(triton, "nv_inference_queue_duration_us", model=stage), stage
        assert series(triton, "nv_inference_compute_infer_duration_us", model=stage), stage

    # Every Triton series the chart's dashboard and autoscaler read exists (GPU ones need a GPU).
    chart = Path(__file__).resolve().parents[3] / "helm" / "facefuse"
    queries = (chart / "files" / "grafana-dashboard.json").read_text() + (chart / "templates" / "_helpers.tpl").read_text()
    names = {name for name, _ in triton} | {name.removesuffix("_total") for name, _ in triton}
    for used in set(re.findall(r"\bnv_\w+", queries)):
        if "gpu" not in used:
            assert used in names, f"the chart reads {used}, which Triton does not export"


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def test_gateway_metrics_listen_on_loopback_only_by_default(traced_gateway):
    assert listening_addresses(traced_gateway.metrics_port) == {"127.0.0.1"}


def test_json_logs_carry_request_and_trace_ids_but_never_keys_tokens_or_image_bytes(
        traced_gateway, credentials, grace_hopper):
    target = f"127.0.0.1:{traced_gateway.port}"
    token = credentials.hs256()
    wrong_key = "ffk_" + "x" * 32
    garbage = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # PNG magic, then no image
    with json_log_lines() as lines:
        with FacefuseClient(target, api_key=credentials.full_key) as client:
            client.fuse(grace_hopper, TEMPLATE, request_id="log-ok-1")
            with pytest.raises(InvalidPhotoError):
                client.fuse(garbage, TEMPLATE, request_id="log-bad-photo-1")
        with FacefuseClient(target, token=token) as client:
            client.fuse(grace_hopper, TEMPLATE, request_id="log-jwt-1")
        with FacefuseClient(target, api_key=wrong_key) as client, pytest.raises(AuthError):
            client.list_templates()

    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    # The secrets checks below prove something only if the calls carrying them were logged.
    refusals = [e for e in entries if "ListTemplates UNAUTHENTICATED" in e["message"]]
    assert len(refusals) == 1, [e["message"] for e in entries]
    by_request = {e.get("request_id"): e for e in entries}
    for request_id, tenant in (("log-ok-1", "tenant-full"), ("log-bad-photo-1", "tenant-full"),
                               ("log-jwt-1", "jwt-tenant")):
        entry = by_request[request_id]
        assert entry["tenant"] == tenant and entry["rpc"] == "Fuse"
        assert len(entry["trace_id"]) == 32 and int(entry["trace_id"], 16)
    assert "IMAGE_DECODE_FAILED" in by_request["log-bad-photo-1"]["message"]

    text = "\n".join(lines)
    for secret in (credentials.full_key, token, wrong_key, token.split(".")[1]):
        assert secret not in text
    for photo in (garbage, grace_hopper):
        for chunk in (photo[8:24], photo[100:116]):
            assert repr(chunk)[2:-1] not in text
            assert chunk.hex() not in text
        assert base64.b64encode(photo[:48]).decode() not in text
