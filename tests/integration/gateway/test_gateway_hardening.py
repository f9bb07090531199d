"""Every input gets a typed reason (never INTERNAL or UNKNOWN), inputs are bounded, and
admission refuses what cannot be served before any Triton work.

Includes a Hypothesis fuzz of the gateway's request handling (a few dozen generated
requests and raw message bodies per run; `facefuse bench fuzz` runs thousands).
"""

from __future__ import annotations

import io
import logging
import shutil
import time

import grpc
import pytest
import tritonclient.grpc as grpcclient
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc
from gateway_helpers import TEMPLATE, running_gateway, target
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facefuse.fuzz import hostile_images, mpo, mutate

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PHOTO_REASONS = {"IMAGE_DECODE_FAILED", "IMAGE_FORMAT_UNSUPPORTED", "IMAGE_PIXELS_EXCEEDED", "IMAGE_TOO_LARGE"}


def raw_call(gateway, method: str, body: bytes, metadata, timeout_s: float = 60.0, service: str = "FaceFusion",
             streaming: bool = False):
    """(code, reason, retry-after seconds or None, trailing metadata) of one call with raw bytes."""
    with grpc.insecure_channel(target(gateway), options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        path = f"/facefuse.v1.{service}/{method}"
        try:
            if streaming:
                list(channel.unary_stream(path)(body, metadata=metadata, timeout=timeout_s))
            else:
                channel.unary_unary(path)(body, metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as error:
            trailing = dict(error.trailing_metadata() or ())
            reason, retry = None, None
            if "grpc-status-details-bin" in trailing:
                for detail in status_pb2.Status.FromString(trailing["grpc-status-details-bin"]).details:
                    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        info = error_details_pb2.ErrorInfo()
                        detail.Unpack(info)
                        reason = info.reason
                    elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        retry = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return error.code(), reason, retry, trailing
    return grpc.StatusCode.OK, None, None, {}


def fuse(gateway, credentials, timeout_s: float = 60.0, **fields):
    request = pb.FuseRequest(**{"template_id": TEMPLATE, **fields})
    return raw_call(gateway, "Fuse", request.SerializeToString(), (("x-api-key", credentials.full_key),), timeout_s)


def photo_image(astronaut: bytes) -> Image.Image:
    return Image.open(io.BytesIO(astronaut)).convert("RGB")


@pytest.mark.parametrize("name", sorted(hostile_images(Image.new("RGB", (8, 8)))))
def test_a_hostile_photo_gets_a_typed_reason_and_the_gateway_keeps_serving(gateway, credentials, client, astronaut,
                                                                            name):
    code, reason, _, _ = fuse(gateway, credentials, photo=hostile_images(photo_image(astronaut))[name])
    assert (code, reason in PHOTO_REASONS) == (INVALID, True), (code, reason)
    assert client.list_templates()


def test_an_mpo_from_a_phone_is_fused_from_its_first_picture(client, astronaut):
    poster = client.fuse(mpo(photo_image(astronaut)), TEMPLATE)
    assert poster.image[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("request_id", ["r" * (1 << 20), "two\nlines", "x" * 129])
def test_an_oversized_or_odd_request_id_is_refused_and_never_echoed_or_logged(gateway, credentials, coffee, caplog,
                                                                              request_id):
    with caplog.at_level(logging.INFO, logger="facefuse.gateway"):
        code, reason, _, trailing = fuse(gateway, credentials, photo=coffee, request_id=request_id)
    assert (code, reason) == (INVALID, "INVALID_ARGUMENT")
    assert request_id[:129] not in str(trailing) and request_id[:129] not in caplog.text


def test_a_100_kb_template_id_is_refused_with_its_reason_in_the_trailer(gateway, credentials, coffee):
    code, reason, _, _ = fuse(gateway, credentials, photo=coffee, template_id="t" * 100_000)
    assert (code, reason) == (INVALID, "INVALID_ARGUMENT")


def test_an_unknown_output_format_is_refused(gateway, credentials, astronaut):
    code, reason, _, _ = fuse(gateway, credentials, photo=astronaut, options=pb.FuseOptions(output_format=9))
    assert (code, reason) == (INVALID, "INVALID_ARGUMENT")


def test_a_jwt_whose_scopes_claim_is_a_number_is_unauthenticated(gateway, credentials, coffee):
    token = credentials.hs256(scopes=5)
    code, reason, _, _ = raw_call(gateway, "Fuse", pb.FuseRequest(template_id=TEMPLATE, photo=coffee).SerializeToString(),
                                  (("authorization", f"Bearer {token}"),))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


@pytest.mark.parametrize("method", ["Fuse", "FuseMany", "ListTemplates"])
def test_a_malformed_protobuf_message_is_invalid_argument_not_unknown(gateway, credentials, method):
    code, reason, _, _ = raw_call(gateway, method, b"\x0a\xff\xff\xff\xff\x0f", (("x-api-key", credentials.full_key),))
    assert (code, reason) == (INVALID, "INVALID_ARGUMENT")


@pytest.mark.parametrize("method", [m.name for m in pb.DESCRIPTOR.services_by_name["VideoJobs"].methods])
def test_a_malformed_video_jobs_message_is_invalid_argument_not_unknown(gateway, credentials, method):
    streaming = pb.DESCRIPTOR.services_by_name["VideoJobs"].methods_by_name[method].server_streaming
    code, reason, _, _ = raw_call(gateway, method, b"\x0a\xff\xff\xff\xff\x0f", (("x-api-key", credentials.full_key),),
                                  service="VideoJobs", streaming=streaming)
    assert (code, reason) == (INVALID, "INVALID_ARGUMENT")


def test_a_well_formed_video_jobs_message_still_reaches_the_service(gateway, credentials):
    code, reason, _, _ = raw_call(gateway, "GetVideoJob", pb.GetVideoJobRequest(job_id="no-such-job").SerializeToString(),
                                  (("x-api-key", credentials.full_key),), service="VideoJobs")
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    code, _, _, _ = raw_call(gateway, "ListVideoTemplates", pb.ListVideoTemplatesRequest().SerializeToString(),
                             (("x-api-key", credentials.full_key),), service="VideoJobs")
    assert code == grpc.StatusCode.OK


def test_a_corrupt_template_artifact_does_not_break_listing_or_other_templates(client, template_store, astronaut):
    broken = template_store.root / "broken-artifact" / "1"
    broken.mkdir(parents=True)
    try:
        (broken / "template.npz").write_bytes(b"not a zip file")
        (broken / "info.json").write_text("{ truncated")
        listed = {t.template_id for t in client.list_templates()}
        assert TEMPLATE in listed and "broken-artifact" not in listed
        with pytest.raises(Exception) as error:
            client.fuse(astronaut, "broken-artifact")
        assert error.value.reason == "TEMPLATE_NOT_FOUND"
    finally:
        shutil.rmtree(broken.parent)


def test_an_unloaded_model_is_unavailable_with_a_retry_after(spare_triton, credentials, astronaut):
    admin = grpcclient.InferenceServerClient(spare_triton.grpc_url)
    with running_gateway(credentials, [spare_triton.grpc_url]) as gateway:
        admin.unload_model("face_fusion", headers=spare_triton.admin_grpc_headers)
        try:
            code, reason, retry, _ = fuse(gateway, credentials, photo=astronaut)
        finally:
            admin.load_model("face_fusion", headers=spare_triton.admin_grpc_headers)
            admin.close()
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE") and retry > 0


def test_a_fuse_many_beyond_free_capacity_is_refused_whole_before_any_triton_call(triton, credentials, astronaut):
    with running_gateway(credentials, [triton.grpc_url], max_inflight_per_replica=3) as gateway:
        request = pb.FuseManyRequest(photo=astronaut, template_ids=[TEMPLATE] * 3)  # analysis + 3 fuses = 4 > 3
        code, reason, retry, _ = raw_call(gateway, "FuseMany", request.SerializeToString(),
                                          (("x-api-key", credentials.full_key),))
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED") and retry > 0
        assert gateway.service.triton.replicas[0].attempts == 0


def test_a_deadline_shorter_than_the_fastest_answer_is_refused_before_any_stage(triton, credentials, astronaut):
    with running_gateway(credentials, [triton.grpc_url]) as gateway:
        pool = gateway.service.triton
        started = time.monotonic()
        assert fuse(gateway, credentials, photo=astronaut)[0] is grpc.StatusCode.OK
        fastest_s = time.monotonic() - started
        sent = pool.replicas[0].attempts
        code, reason, _, _ = fuse(gateway, credentials, timeout_s=fastest_s / 4, photo=astronaut)
        assert (code, reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
        assert pool.replicas[0].attempts == sent


# ---- fuzz: generated requests and raw bodies ---------------------------------------
TYPED_CODES = {grpc.StatusCode.OK, INVALID, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
               grpc.StatusCode.DEADLINE_EXCEEDED}

requests = st.builds(
    dict,
    request_id=st.one_of(st.just(""), st.text(max_size=200)),
    template_id=st.one_of(st.just(TEMPLATE), st.just("group-six"), st.text(max_size=80)),
    template_face_index=st.integers(-(2**31), 2**31 - 1),
    options=st.builds(
        pb.FuseOptions,
        fuse_degree=st.floats(allow_nan=True, allow_infinity=True, width=32),
        profile_degree=st.floats(allow_nan=True, allow_infinity=True, width=32),
        output_format=st.integers(0, 2**31 - 1),
        output_quality=st.integers(-(2**31), 2**31 - 1),
    ),
    photo_seed=st.integers(0, 2**32 - 1),
    mutated=st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields=requests)
def test_generated_fuse_requests_get_typed_answers(gateway, credentials, coffee, fields):
    seed, mutated = fields.pop("photo_seed"), fields.pop("mutated")
    photo = mutate(coffee, seed) if mutated else coffee
    code, reason, _, _ = fuse(gateway, credentials, photo=photo, **fields)
    assert code in TYPED_CODES and (code is grpc.StatusCode.OK or reason), (code, reason)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=512), method=st.sampled_from(["Fuse", "FuseMany", "ListTemplates"]))
def test_raw_message_bodies_get_typed_answers(gateway, credentials, body, method):
    code, reason, _, _ = raw_call(gateway, method, body, (("x-api-key", credentials.full_key),))
    assert code in TYPED_CODES and (code is grpc.StatusCode.OK or reason), (code, reason)


def test_the_gateway_serves_after_the_fuzzing(client, astronaut):
    assert client.fuse(astronaut, TEMPLATE).image
