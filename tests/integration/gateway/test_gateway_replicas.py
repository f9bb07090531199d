"""Replica trouble seen through the real gateway, beyond tests/integration/test_gateway.py:
a dead replica is skipped while it cools down, health follows the replicas, and a
stalled replica meets the caller's deadline inside the gateway (reason included)."""

from __future__ import annotations

import grpc
import pytest
from facefuse_client import FacefuseClient
from gateway_helpers import TEMPLATE, kill, pause, raw_fuse_error, resume, running_gateway, target, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc


def health_status(gateway) -> int:
    with grpc.insecure_channel(target(gateway)) as channel:
        request = health_pb2.HealthCheckRequest(service="facefuse.v1.FaceFusion")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def test_calls_skip_a_dead_replica_while_it_cools_down(triton, spare_triton, credentials, astronaut):
    # The doomed replica is listed first, so it takes first attempts while it is alive.
    with running_gateway(credentials, [spare_triton.grpc_url, triton.grpc_url], hedge_delay_ms=30_000,
                         replica_cooldown_s=300) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        doomed = gateway.service.triton.replicas[0]
        assert sdk.fuse(astronaut, TEMPLATE).image
        assert doomed.attempts == 1
        kill(spare_triton)
        assert sdk.fuse(astronaut, TEMPLATE).image  # failed over to the live replica
        attempts_after_failover = doomed.attempts
        for _ in range(4):
            assert sdk.fuse(astronaut, TEMPLATE).image
    assert attempts_after_failover == 2
    assert doomed.attempts == attempts_after_failover


def test_health_turns_not_serving_when_no_replica_is_ready(spare_triton, credentials):
    with running_gateway(credentials, [spare_triton.grpc_url], health_poll_s=0.1) as gateway:
        assert health_status(gateway) == health_pb2.HealthCheckResponse.SERVING
        kill(spare_triton)
        wait_until(lambda: health_status(gateway) == health_pb2.HealthCheckResponse.NOT_SERVING,
                   what="the gateway to report NOT_SERVING")


@pytest.mark.parametrize(
    "caller_timeout_s, gateway_settings",
    [(2.0, dict(deadline_margin_ms=500)), (60.0, dict(max_timeout_s=1.5))],
    ids=["callers-deadline", "gateway-cap"],
)
def test_a_stalled_replica_meets_the_deadline_inside_the_gateway(spare_triton, credentials, astronaut,
                                                                 caller_timeout_s, gateway_settings):
    """The Triton call carries the call's deadline, so the gateway itself answers
    DEADLINE_EXCEEDED with its reason instead of waiting on Triton past it."""
    with running_gateway(credentials, [spare_triton.grpc_url], **gateway_settings) as gateway:
        pause(spare_triton)
        try:
            code, info, _, trailing = raw_fuse_error(gateway, (("x-api-key", credentials.full_key),), astronaut,
                                                     timeout_s=caller_timeout_s)
        finally:
            resume(spare_triton)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert info.reason == trailing["facefuse-reason"] == "DEADLINE_EXCEEDED"
