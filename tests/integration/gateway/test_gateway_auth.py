"""Auth and quotas on the real gateway, beyond tests/integration/test_gateway.py: the
JWT cases an attacker tries, RetryInfo on the wire, the concurrency quota, and secrets
kept out of logs and error messages."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import jwt
import pytest
from facefuse_client import AuthError, FacefuseClient, RetryableError
from gateway_helpers import (
    AUDIENCE, HS256_SECRET, ISSUER, TEMPLATE, in_flight, pause, raw_fuse_error, resume, running_gateway, target,
    wait_until,
)

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def call_with(gateway, **credentials):
    with FacefuseClient(target(gateway), **credentials) as sdk:
        return sdk.list_templates()


def _alg_none(credentials) -> str:
    return jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, None, algorithm="none")


BAD_TOKENS = {
    "no-expiry": lambda c: c.hs256(exp=None),
    "no-issuer": lambda c: c.hs256(iss=None),
    "no-audience": lambda c: c.hs256(aud=None),
    "untrusted-rs256-key": lambda c: c.rs256(c.untrusted_rs256_private_pem),
    "alg-none": _alg_none,
    "not-a-jwt": lambda c: "definitely.not.a-jwt",
    "tampered-claims": lambda c: _tampered(c.hs256()),
}


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    body = jwt.utils.base64url_encode(b'{"sub":"x","tenant":"other","scope":"fuse","exp":9999999999}').decode()
    return ".".join([header, body, signature])


@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=list(BAD_TOKENS))
def test_an_invalid_jwt_is_unauthenticated(gateway, credentials, case):
    with pytest.raises(AuthError) as error:
        call_with(gateway, token=BAD_TOKENS[case](credentials))
    assert (error.value.reason, error.value.code) == ("UNAUTHENTICATED", UNAUTHENTICATED)


def test_rate_limited_carries_retry_info_and_retry_after_ms_on_the_wire(gateway, credentials, astronaut):
    with FacefuseClient(target(gateway), api_key=credentials.rate_limited_key) as sdk:
        sdk.list_templates()
        sdk.list_templates()  # the burst of two is spent
    code, info, retry, trailing = raw_fuse_error(gateway, (("x-api-key", credentials.rate_limited_key),), astronaut)
    assert (code, info.reason, trailing["facefuse-reason"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "RATE_LIMITED")
    assert retry is not None and retry.retry_delay.ToTimedelta().total_seconds() > 0
    assert int(trailing["retry-after-ms"]) > 0


def test_a_tenant_over_its_concurrency_quota_is_rate_limited(credentials, spare_triton, astronaut):
    with running_gateway(credentials, [spare_triton.grpc_url]) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.one_at_a_time_key) as sdk:
        pause(spare_triton)  # the first call stays in flight
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(poster=sdk.fuse(astronaut, TEMPLATE, timeout_s=60)))
        worker.start()
        try:
            wait_until(lambda: in_flight(gateway) == 1, what="the first call to reach Triton")
            with pytest.raises(RetryableError) as error:
                sdk.fuse(astronaut, TEMPLATE)
        finally:
            resume(spare_triton)
            worker.join(60)
        assert error.value.reason == "RATE_LIMITED" and "in flight" in error.value.message
        assert first["poster"].image  # the call holding the slot was served
        assert sdk.list_templates()  # and the slot is free again


def test_secrets_never_reach_the_logs_or_the_caller(gateway, credentials, astronaut, caplog):
    token = credentials.hs256()
    secrets = [credentials.full_key, credentials.list_only_key, token, HS256_SECRET]
    with caplog.at_level(logging.DEBUG):
        call_with(gateway, api_key=credentials.full_key)
        call_with(gateway, token=token)
        messages = []
        for bad in (dict(api_key=credentials.full_key + "x"), dict(token=token + "x")):
            with pytest.raises(AuthError) as error:
                call_with(gateway, **bad)
            messages.append(str(error.value))
        with FacefuseClient(target(gateway), api_key=credentials.list_only_key) as sdk, pytest.raises(AuthError) as error:
            sdk.fuse(astronaut, TEMPLATE)
        messages.append(str(error.value))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "tenant=" in logged  # the gateway did log these calls
    for secret in secrets:
        assert secret not in logged
        assert all(secret[:12] not in m for m in messages)


def test_settings_never_print_the_jwt_secret(gateway):
    settings = gateway.settings
    assert HS256_SECRET not in repr(settings) and HS256_SECRET not in str(settings.model_dump())
