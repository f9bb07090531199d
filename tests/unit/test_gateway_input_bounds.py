"""Gateway input bounds, key validation and exact admission, without a server."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from facefuse_client.v1 import facefuse_pb2 as pb

from facefuse.errors import OptionError
from facefuse.gateway.auth import Authenticator, add_key
from facefuse.gateway.errors import Overloaded, Unauthenticated
from facefuse.gateway.guard import check_request_id
from facefuse.gateway.service import options_from
from facefuse.gateway.settings import GatewaySettings
from facefuse.gateway.triton import TritonPool
from facefuse.templates import check_template_id

SECRET = "test-secret-with-enough-length-for-hs256"


@pytest.fixture
def settings(tmp_path):
    return GatewaySettings(keys_file=tmp_path / "keys.json", jwt_hs256_secret=SECRET, jwt_issuer="tests",
                           jwt_audience="facefuse")


def token(**claims):
    body = {"sub": "svc", "tenant": "acme", "iss": "tests", "aud": "facefuse", "exp": time.time() + 60}
    body.update(claims)
    return jwt.encode(body, SECRET, algorithm="HS256")


@pytest.mark.parametrize("request_id", ["x" * 129, "a\nforged log line", "id with spaces", "é"])
def test_a_long_or_odd_request_id_is_invalid_argument_without_echoing_it(request_id):
    with pytest.raises(OptionError) as error:
        check_request_id(request_id)
    assert request_id not in error.value.detail and "1-128 characters" in error.value.detail


def test_a_missing_request_id_gets_a_fresh_one_and_a_good_one_is_kept():
    assert len(check_request_id("")) == 32 and check_request_id("campaign-42.upload:7") == "campaign-42.upload:7"


def test_a_100_kb_template_id_is_refused_with_a_short_message():
    with pytest.raises(OptionError) as error:
        check_template_id("t" * 100_000)
    assert len(str(error.value)) < 300 and "100000 characters" in str(error.value)


def test_an_unknown_output_format_is_refused_not_turned_into_jpeg():
    message = pb.FuseOptions()
    message.output_format = 7  # an enum value this gateway does not know
    with pytest.raises(OptionError, match="output_format 7"):
        options_from(message)


@pytest.mark.parametrize("scopes, burst, concurrency, rate, message", [
    (["fuse", "admin"], 10, 2, 5.0, "unknown"),
    ([], 10, 2, 5.0, "empty"),
    (["fuse"], -1, 2, 5.0, "burst"),
    (["fuse"], 10, 0, 5.0, "max_concurrency"),
    (["fuse"], 10, 2, -5.0, "rate_per_s"),
    (["fuse"], 10, 2, float("nan"), "rate_per_s"),
])
def test_add_key_refuses_unknown_scopes_and_limits_that_are_not_positive(settings, scopes, burst, concurrency, rate,
                                                                         message):
    with pytest.raises(ValueError, match=message):
        add_key(settings.keys_file, "web", "acme", scopes, rate, burst, concurrency)
    assert not settings.keys_file.exists()


def test_add_key_refuses_a_tenant_that_would_forge_a_log_line(settings):
    with pytest.raises(ValueError, match="tenant"):
        add_key(settings.keys_file, "web", "acme\nfake entry", ["fuse"], 5, 10, 2)


@pytest.mark.parametrize("claims", [{"scopes": 5}, {"scopes": ["fuse", 7]}, {"scope": 12}, {"tenant": {"a": 1}},
                                    {"tenant": "acme\ninjected"}])
def test_a_jwt_with_malformed_claims_is_unauthenticated_not_internal(settings, claims):
    with pytest.raises(Unauthenticated):
        Authenticator(settings).authenticate({"authorization": f"Bearer {token(**claims)}"})


def test_admission_is_exact_under_concurrent_callers_and_counts_a_whole_call_up_front():
    async def run():
        pool = TritonPool(["a:1"], hedge_delay_s=1.0, max_inflight_per_replica=8)
        inside, peak, refused = 0, 0, 0

        async def call(calls: int):
            nonlocal inside, peak, refused
            try:
                with pool.reserve(calls):
                    inside += calls
                    peak = max(peak, inside)
                    await asyncio.sleep(0.01)
                    inside -= calls
            except Overloaded:
                refused += 1

        try:
            await asyncio.gather(*(call(1 + i % 4) for i in range(200)))
            assert pool.reserved == 0
            with pool.reserve(6):
                with pytest.raises(Overloaded):  # a FuseMany of 2 templates needs 3 more: refused whole
                    with pool.reserve(3):
                        pass
        finally:
            await pool.close()
        return peak, refused

    peak, refused = asyncio.run(run())
    assert peak <= 8 and refused > 0


def test_the_gateway_binds_loopback_unless_told_and_refuses_half_a_tls_setting(tmp_path):
    from facefuse.gateway.server import server_credentials

    assert GatewaySettings().host == "127.0.0.1"
    assert server_credentials(GatewaySettings()) is None
    with pytest.raises(ValueError, match="both"):
        server_credentials(GatewaySettings(tls_cert_file=tmp_path / "cert.pem"))


def test_the_latency_window_floors_at_the_fastest_and_forgets_old_samples():
    from facefuse.gateway.latency import LatencyWindow

    now = [0.0]
    window = LatencyWindow(size=8, horizon_s=10, clock=lambda: now[0])
    assert window.floor() == 0  # nothing known: admit
    for latency in (0.2, 0.3, 2.0, 2.5, 3.0):
        window.add(latency)
    assert window.floor() == 0.2
    now[0] = 11.0
    assert window.floor() == 0


def test_the_expected_wait_is_the_admitted_calls_at_the_recent_throughput(monkeypatch):
    from facefuse.gateway import triton

    now = [100.0]
    monkeypatch.setattr(triton.time, "monotonic", lambda: now[0])

    async def run():
        pool = TritonPool(["a:1"], hedge_delay_s=1.0, max_inflight_per_replica=64)
        try:
            assert pool.expected_wait_s(1) == 0.0  # never busy yet: admit
            for _ in range(12):
                now[0] += 0.25
                pool.throughput.count()
            with pool.reserve(19):
                return pool.expected_wait_s(1)
        finally:
            await pool.close()

    # 12 answered in the 2.75 s since the first; (19 + 1) calls wait 20 / (12 / 2.75) s
    assert asyncio.run(run()) == pytest.approx(20 / (12 / 2.75))
