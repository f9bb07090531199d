"""Gateway logic without a server: credentials, quotas, cheap checks, status mapping."""

import json
import time

import grpc
import jwt
import pytest
from facefuse_client.client import channel_options
from facefuse_client.errors import RetryableError, error_from_rpc
from facefuse_client.v1 import facefuse_pb2 as pb
from google.rpc import error_details_pb2, status_pb2

from facefuse.errors import ImageError, OptionError, Reason
from facefuse.gateway.admission import GATES, RefusalLog
from facefuse.gateway.auth import Authenticator, Principal, add_key, hash_key
from facefuse.gateway.errors import RateLimited, Unauthenticated, pushback_ms, status_for
from facefuse.gateway.quotas import Quotas
from facefuse.gateway.service import check_photo, options_from
from facefuse.gateway.settings import GatewaySettings

SECRET = "test-secret-with-enough-length-for-hs256"


@pytest.fixture
def settings(tmp_path):
    return GatewaySettings(keys_file=tmp_path / "keys.json", jwt_hs256_secret=SECRET, jwt_issuer="tests",
                           jwt_audience="facefuse")


def token(**claims):
    body = {"sub": "svc", "tenant": "acme", "scope": "fuse", "iss": "tests", "aud": "facefuse", "exp": time.time() + 60}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def test_keys_are_stored_hashed_and_authenticate(settings):
    key = add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    stored = settings.keys_file.read_text()
    assert key not in stored and hash_key(key) in stored
    principal = Authenticator(settings).authenticate({"x-api-key": key})
    assert principal.tenant == "acme" and principal.scopes == {"fuse"} and principal.credential == "web"


@pytest.mark.parametrize("metadata", [{}, {"x-api-key": "ffk_wrong"}, {"authorization": "Bearer not-a-jwt"}])
def test_missing_or_bad_credentials_are_unauthenticated(settings, metadata):
    add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    with pytest.raises(Unauthenticated):
        Authenticator(settings).authenticate(metadata)


def test_jwt_claims_give_tenant_and_scopes(settings):
    principal = Authenticator(settings).authenticate({"authorization": f"Bearer {token(scope='fuse templates:read')}"})
    assert principal.tenant == "acme" and principal.scopes == {"fuse", "templates:read"}


@pytest.mark.parametrize("claims, message", [
    ({"exp": time.time() - 5}, "expired"),
    ({"iss": "someone-else"}, "not valid"),
    ({"aud": "other"}, "not valid"),
    ({"exp": None}, "not valid"),
])
def test_jwts_are_checked_for_expiry_issuer_and_audience(settings, claims, message):
    with pytest.raises(Unauthenticated, match=message):
        Authenticator(settings).authenticate({"authorization": f"Bearer {token(**claims)}"})


def test_an_unsigned_jwt_is_refused(settings):
    unsigned = jwt.encode({"sub": "x", "exp": time.time() + 60}, None, algorithm="none")
    with pytest.raises(Unauthenticated, match="algorithm"):
        Authenticator(settings).authenticate({"authorization": f"Bearer {unsigned}"})


def test_the_token_bucket_refuses_over_rate_and_refills():
    now = [0.0]
    quotas = Quotas(clock=lambda: now[0])
    principal = Principal("acme", frozenset({"fuse"}), rate_per_s=2.0, burst=2, max_concurrency=10, credential="k")
    for _ in range(2):
        with quotas.admit(principal):
            pass
    with pytest.raises(RateLimited) as info:
        with quotas.admit(principal):
            pass
    assert info.value.retry_after_s == pytest.approx(0.5)
    now[0] = 0.5
    with quotas.admit(principal):
        pass


def test_calls_in_flight_are_capped_per_tenant():
    quotas = Quotas()
    principal = Principal("acme", frozenset(), rate_per_s=100, burst=100, max_concurrency=1, credential="k")
    with quotas.admit(principal):
        with pytest.raises(RateLimited, match="in flight"):
            with quotas.admit(principal):
                pass
    with quotas.admit(principal):  # released
        pass


def test_switching_between_a_tenants_credentials_neither_refills_nor_forgets_calls_in_flight():
    now = [0.0]
    quotas = Quotas(clock=lambda: now[0])
    key = Principal("acme", frozenset(), rate_per_s=1.0, burst=2, max_concurrency=1, credential="key")
    jwt = Principal("acme", frozenset(), rate_per_s=2.0, burst=3, max_concurrency=1, credential="jwt:acme")
    with quotas.admit(key):
        with pytest.raises(RateLimited, match="in flight"):
            with quotas.admit(jwt):
                pass
    with quotas.admit(jwt):  # the tenant's second token
        pass
    with pytest.raises(RateLimited, match="rate"):
        with quotas.admit(key):
            pass


@pytest.mark.parametrize("photo, reason", [
    (b"", Reason.IMAGE_DECODE_FAILED),
    (b"hello world", Reason.IMAGE_DECODE_FAILED),
    (b"GIF89a" + b"\0" * 20, Reason.IMAGE_FORMAT_UNSUPPORTED),
    (b"\xff\xd8\xff" + b"\0" * 2000, Reason.IMAGE_TOO_LARGE),
])
def test_cheap_photo_checks(photo, reason):
    with pytest.raises(ImageError) as info:
        check_photo(photo, max_bytes=1000)
    assert info.value.reason is reason


def test_options_default_and_range_checks():
    options = options_from(pb.FuseOptions())
    assert (options.fuse_degree, options.profile_degree, options.add_label, options.output_format) == (80.0, 50.0, True, "jpeg")
    assert options_from(pb.FuseOptions(fuse_degree=0, add_label=False, output_format=pb.PNG)).fuse_degree == 0
    with pytest.raises(OptionError, match="fuse_degree 150"):
        options_from(pb.FuseOptions(fuse_degree=150))
    with pytest.raises(OptionError, match="quality"):
        options_from(pb.FuseOptions(output_quality=0))


def test_a_status_carries_the_reason_and_retry_hint_that_the_client_reads_back():
    status = status_for(RateLimited("slow down", retry_after_s=1.5))
    assert status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing = dict(status.trailing_metadata)
    assert trailing["facefuse-reason"] == "RATE_LIMITED" and trailing["retry-after-ms"] == "1500"
    details = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    details.details[0].Unpack(info)
    assert info.reason == "RATE_LIMITED" and info.domain == "facefuse.v1"

    class FakeAioError(grpc.aio.AioRpcError):
        def __init__(self):
            super().__init__(status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details)

    error = error_from_rpc(FakeAioError())
    assert isinstance(error, RetryableError) and error.reason == "RATE_LIMITED" and error.retry_after_s == 1.5


def test_keys_file_format_is_documented_json(settings):
    add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    entry = json.loads(settings.keys_file.read_text())["keys"][0]
    assert set(entry) == {"id", "sha256", "tenant", "scopes", "rate_per_s", "burst", "max_concurrency"}


# ---- one credential per call ---------------------------------------------------------
@pytest.mark.parametrize("order", ["valid-first", "valid-last"])
def test_a_call_carrying_two_api_keys_is_unauthenticated_whichever_comes_last(settings, order):
    valid = add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    pairs = [("x-api-key", valid), ("x-api-key", "ffk_someone-elses")]
    with pytest.raises(Unauthenticated, match="2 credentials .*send exactly one"):
        Authenticator(settings).authenticate(pairs if order == "valid-first" else pairs[::-1])


def test_a_call_carrying_an_api_key_and_a_bearer_token_is_unauthenticated(settings):
    valid = add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    with pytest.raises(Unauthenticated, match="x-api-key, authorization"):
        Authenticator(settings).authenticate([("x-api-key", valid), ("authorization", f"Bearer {token()}")])


def test_an_authorization_header_of_another_scheme_is_refused_not_skipped(settings):
    valid = add_key(settings.keys_file, "web", "acme", ["fuse"], 5, 10, 2)
    with pytest.raises(Unauthenticated, match="scheme 'Basic' is not accepted"):
        Authenticator(settings).authenticate([("authorization", "Basic dXNlcjpwdw==")])
    with pytest.raises(Unauthenticated, match="2 credentials"):
        Authenticator(settings).authenticate([("authorization", "Basic dXNlcjpwdw=="), ("x-api-key", valid)])


# ---- retry-after as gRPC retry pushback ----------------------------------------------
def test_the_retry_pushback_is_the_retry_after_hint_stretched_by_up_to_half():
    assert pushback_ms(1.0, None, rand=lambda: 0.0) == 1000
    assert pushback_ms(1.0, None, rand=lambda: 0.999) == 1499
    spread = {pushback_ms(0.5, 30.0) for _ in range(50)}
    assert len(spread) > 10 and min(spread) >= 500 and max(spread) < 750  # jittered, never early


def test_no_retry_is_pushed_when_the_wait_outlasts_the_deadline_or_there_is_no_hint():
    assert pushback_ms(100.0, 30.0) == -1
    assert pushback_ms(1.0, 1.2, rand=lambda: 0.5) == -1
    assert pushback_ms(None, 30.0) == -1


def test_every_resource_exhausted_status_tells_grpc_retry_policies_when_to_come_back():
    limited = dict(status_for(RateLimited("slow down", retry_after_s=0.5), time_remaining_s=30.0).trailing_metadata)
    assert 500 <= int(limited["grpc-retry-pushback-ms"]) < 750
    queue_full = dict(status_for(RateLimited("5 jobs queued")).trailing_metadata)
    assert queue_full["grpc-retry-pushback-ms"] == "-1"  # no hint: do not retry
    assert "grpc-retry-pushback-ms" not in dict(status_for(Unauthenticated("no key")).trailing_metadata)


def test_the_sdk_channel_retries_refusals_as_the_server_pushes_back_and_is_throttled():
    options = dict(channel_options())
    config = json.loads(options["grpc.service_config"])
    photo = next(m for m in config["methodConfig"] if m["name"] == [{"service": "facefuse.v1.FaceFusion"}])
    assert "RESOURCE_EXHAUSTED" in photo["retryPolicy"]["retryableStatusCodes"]
    assert config["retryThrottling"]["maxTokens"] > 0
    assert options["grpc.per_rpc_retry_buffer_size"] >= GatewaySettings().max_image_bytes  # photos fit the buffer


def test_refusal_lines_are_thinned_per_second_and_the_left_out_are_counted():
    now = [100.2]
    refusals = RefusalLog(per_s=2, clock=lambda: now[0])
    assert [refusals.line("RATE_LIMITED") for _ in range(5)] == [0, 0, None, None, None]
    assert refusals.line("UNAUTHENTICATED") == 0  # each reason has its own allowance
    now[0] = 101.1
    assert refusals.line("RATE_LIMITED") == 3
    assert refusals.line("RATE_LIMITED") == 0


def test_every_facefuse_method_is_gated_before_its_request_is_read():
    services = [pb.DESCRIPTOR.services_by_name[name] for name in ("FaceFusion", "VideoJobs")]
    methods = {f"/{service.full_name}/{method.name}" for service in services for method in service.methods}
    assert methods == set(GATES)  # a new RPC without a gate would be refused only after its photo is read
