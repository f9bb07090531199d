"""Refusals decided from a call's metadata, before its photo is read, on the real gateway.

A raw caller opens each call as a client stream whose photo is held back until the
answer came: a refusal that needed the request would never come (the call would run
into its deadline), so an answer proves the refusal was decided without the photo.
"""

from __future__ import annotations

import threading
import urllib.request

import grpc
import pytest
from facefuse_client import FacefuseClient, RetryableError
from facefuse_client.v1 import facefuse_pb2 as pb
from gateway_helpers import TEMPLATE, in_flight, pause, resume, running_gateway, target, wait_until
from prometheus_client.parser import text_string_to_metric_families

from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, add_key

FUSE = "/facefuse.v1.FaceFusion/Fuse"


def held_back_call(gateway, metadata, method: str = FUSE, photo: bytes = b"", timeout_s: float = 20.0):
    """(status code, trailing metadata, whether the photo had been sent) of a Fuse whose
    request is only sent once the gateway has answered (or after timeout_s)."""
    answered, sent = threading.Event(), threading.Event()

    def requests():
        answered.wait(timeout_s)
        sent.set()
        yield pb.FuseRequest(template_id=TEMPLATE, photo=photo)

    with grpc.insecure_channel(target(gateway)) as channel:
        call = channel.stream_unary(method, request_serializer=pb.FuseRequest.SerializeToString,
                                    response_deserializer=pb.FuseResponse.FromString)
        try:
            call(requests(), metadata=metadata, timeout=timeout_s)
            return grpc.StatusCode.OK, {}, sent.is_set()
        except grpc.RpcError as error:
            was_sent = sent.is_set()
            answered.set()
            return error.code(), dict(error.trailing_metadata() or ()), was_sent


def metric(gateway, name: str, **labels) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


CREDENTIALS = {
    "a-wrong-key": lambda c: (("x-api-key", "ffk_" + "w" * 32),),
    "no-credential": lambda c: (),
    "two-api-keys": lambda c: (("x-api-key", c.full_key), ("x-api-key", c.list_only_key)),
    "a-key-and-a-bearer-token": lambda c: (("x-api-key", c.full_key), ("authorization", f"Bearer {c.hs256()}")),
    "a-key-without-the-fuse-scope": lambda c: (("x-api-key", c.list_only_key),),
}
EXPECTED = {"a-key-without-the-fuse-scope": (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")}


@pytest.mark.parametrize("case", list(CREDENTIALS))
def test_a_call_with_bad_credentials_is_refused_before_its_photo_is_sent(gateway, credentials, case):
    code, trailing, sent = held_back_call(gateway, CREDENTIALS[case](credentials))
    assert (code, trailing.get("facefuse-reason")) == EXPECTED.get(case, (grpc.StatusCode.UNAUTHENTICATED,
                                                                           "UNAUTHENTICATED"))
    assert not sent


def test_two_credentials_are_refused_with_a_reason_that_says_to_send_one(gateway, credentials, astronaut):
    with grpc.insecure_channel(target(gateway)) as channel:
        stub = channel.unary_unary(FUSE, request_serializer=pb.FuseRequest.SerializeToString,
                                   response_deserializer=pb.FuseResponse.FromString)
        with pytest.raises(grpc.RpcError) as refused:
            stub(pb.FuseRequest(template_id=TEMPLATE, photo=astronaut), timeout=20,
                 metadata=(("x-api-key", credentials.list_only_key), ("x-api-key", credentials.full_key)))
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "2 credentials" in refused.value.details() and "send exactly one" in refused.value.details()


@pytest.fixture
def scarce_gateway(credentials, triton):
    """A gateway of its own (its own buckets) with a key of one call, then one per 100 s."""
    key = add_key(credentials.keys_file, "scarce", "tenant-scarce", [SCOPE_FUSE, SCOPE_TEMPLATES], 0.01, 1, 8)
    with running_gateway(credentials, [triton.grpc_url], metrics_port=0) as gateway:
        yield gateway, key


def test_a_rate_limited_call_is_refused_before_its_photo_is_sent_with_its_retry_hints(scarce_gateway):
    gateway, key = scarce_gateway
    metadata = (("x-api-key", key),)
    with FacefuseClient(target(gateway), api_key=key) as sdk:
        sdk.list_templates()  # the burst of one
    code, trailing, sent = held_back_call(gateway, metadata)
    assert (code, trailing["facefuse-reason"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert int(trailing["retry-after-ms"]) > 0 and "grpc-status-details-bin" in trailing
    assert trailing["grpc-retry-pushback-ms"] == "-1"  # about 100 s: beyond the call's deadline
    assert not sent
    assert metric(gateway, "facefuse_gateway_rate_limited_calls_total", tenant="tenant-scarce") == 1


def test_an_overloaded_gateway_refuses_before_the_photo_is_sent_and_counts_it(credentials, spare_triton, astronaut):
    with running_gateway(credentials, [spare_triton.grpc_url], max_inflight_per_replica=1, metrics_port=0) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        pause(spare_triton)  # the first call holds the only Triton place
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(poster=sdk.fuse(astronaut, TEMPLATE, timeout_s=60)))
        worker.start()
        try:
            wait_until(lambda: in_flight(gateway) == 1, what="the first call to reach Triton")
            code, trailing, sent = held_back_call(gateway, (("x-api-key", credentials.full_key),))
        finally:
            resume(spare_triton)
            worker.join(60)
        assert (code, trailing["facefuse-reason"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
        assert int(trailing["retry-after-ms"]) > 0 and not sent
        assert first["poster"].image  # the admitted call was served
        assert metric(gateway, "facefuse_gateway_shed_calls_total") == 1
        assert metric(gateway, "facefuse_gateway_calls_total", rpc="Fuse", reason="OVERLOADED") == 1


def test_an_admitted_call_whose_photo_comes_late_is_still_served(gateway, credentials, astronaut):
    code, _, sent = held_back_call(gateway, (("x-api-key", credentials.full_key),), photo=astronaut, timeout_s=3)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and sent  # admitted: the gateway waited for the photo
    with FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        assert sdk.fuse(astronaut, TEMPLATE).image


# ---- the SDK and retry-after ------------------------------------------------------------
@pytest.fixture
def paced_gateway(credentials, triton):
    """A gateway with a key of one call per half second (burst 1)."""
    key = add_key(credentials.keys_file, "paced", "tenant-paced", [SCOPE_FUSE, SCOPE_TEMPLATES], 2.0, 1, 8)
    with running_gateway(credentials, [triton.grpc_url], metrics_port=0) as gateway:
        yield gateway, key


def test_the_sdk_waits_out_a_rate_limit_as_told_and_then_succeeds(paced_gateway):
    gateway, key = paced_gateway
    with FacefuseClient(target(gateway), api_key=key) as sdk:
        assert sdk.list_templates()
        assert sdk.list_templates()  # refused once (retry after ~0.5 s), retried by the SDK after the hint
    refused = metric(gateway, "facefuse_gateway_calls_total", rpc="ListTemplates", reason="RATE_LIMITED")
    served = metric(gateway, "facefuse_gateway_calls_total", rpc="ListTemplates", reason="OK")
    # Had it come back before the hint, the bucket would have refused it again (three times, then raised).
    assert (refused, served) == (1, 2)


def test_the_sdk_does_not_wait_for_a_retry_after_beyond_its_deadline(scarce_gateway):
    gateway, key = scarce_gateway
    with FacefuseClient(target(gateway), api_key=key, timeout_s=20) as sdk:
        sdk.list_templates()  # the burst of one
        with pytest.raises(RetryableError) as refused:
            sdk.list_templates()  # the next token comes in about 100 s
    assert refused.value.reason == "RATE_LIMITED" and refused.value.retry_after_s > 20  # not DEADLINE_EXCEEDED
    assert metric(gateway, "facefuse_gateway_calls_total", rpc="ListTemplates", reason="RATE_LIMITED") == 1
