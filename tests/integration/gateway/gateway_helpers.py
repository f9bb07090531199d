"""Helpers for the gateway tests: credentials, replica control, Triton statistics.

Imported by the tests of this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES
from facefuse.gateway.server import GatewayThread
from facefuse.gateway.settings import GatewaySettings
from facefuse.server.triton import configured_gateway_key
from facefuse.settings import get_settings
from facefuse.triton_client import fusion_stages, keyed_client
from photo_bytes import encoded, rgb_of  # noqa: F401 - re-exported to the gateway tests

ISSUER = "https://auth.facefuse.test"
AUDIENCE = "facefuse-gateway"
HS256_SECRET = "a-test-secret-of-at-least-thirty-two-bytes"
TEMPLATE = "hopper-portrait"


@dataclass
class Credentials:
    keys_file: Path
    full_key: str  # fuse + templates:read, generous quota
    list_only_key: str  # templates:read only
    rate_limited_key: str  # burst of 2, then 0.01 calls/s
    one_at_a_time_key: str  # max_concurrency 1
    rs256_private_pem: bytes
    rs256_public_file: Path
    untrusted_rs256_private_pem: bytes  # a key the gateway does not know

    def hs256(self, secret: str = HS256_SECRET, **claims) -> str:
        return jwt.encode(jwt_claims(**claims), secret, algorithm="HS256")

    def rs256(self, private_pem: bytes | None = None, **claims) -> str:
        return jwt.encode(jwt_claims(**claims), private_pem or self.rs256_private_pem, algorithm="RS256")


def jwt_claims(**overrides) -> dict:
    """Valid claims; an override of None leaves the claim out."""
    claims = {"sub": "svc-poster", "tenant": "jwt-tenant", "scope": f"{SCOPE_FUSE} {SCOPE_TEMPLATES}",
              "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def gateway_settings(credentials: Credentials, triton_urls: list[str], **overrides) -> GatewaySettings:
    values = dict(
        host="127.0.0.1", triton_urls=triton_urls, keys_file=credentials.keys_file,
        jwt_hs256_secret=HS256_SECRET, jwt_rs256_public_key_file=credentials.rs256_public_file,
        jwt_issuer=ISSUER, jwt_audience=AUDIENCE,
    )
    values.update(overrides)
    return GatewaySettings(**values)


@contextlib.contextmanager
def running_gateway(credentials: Credentials, triton_urls: list[str], **overrides):
    """The real gateway on a free port of this process, in front of `triton_urls`."""
    with GatewayThread(gateway_settings(credentials, triton_urls, **overrides), port=0) as gateway:
        yield gateway


def target(gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


# ---- replicas --------------------------------------------------------------------
def pause(server) -> None:
    """Freeze tritonserver (not its backend stubs): calls to it hang, like a stalled replica."""
    os.kill(server.process.pid, signal.SIGSTOP)


def resume(server) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)


def kill(server) -> None:
    """Crash the replica: tritonserver and its backend stubs die at once (SIGKILL to the
    group); reaping removes its shared-memory regions, as every stop after a crash does."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    server.reap()


def _request_counts(url: str, model: str, kinds: tuple[str, ...]) -> int:
    client = keyed_client(url, configured_gateway_key(get_settings()))
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    finally:
        client.close()
    return sum(int(s["inference_stats"][kind].get("count", 0)) for s in stats for kind in kinds)


def first_stage(triton) -> str:
    """The model a fusion's photo reaches first (it decodes it): decode, or on the cpu
    profile its detect_faces step."""
    client = triton.client()
    try:
        return fusion_stages(client)[0]
    finally:
        client.close()


def successes(url: str, model: str) -> int:
    """Requests `model` completed successfully on the Triton at `url` (statistics API)."""
    return _request_counts(url, model, ("success",))


def requests_seen(url: str, model: str) -> int:
    """Requests `model` received on the Triton at `url`, successful or failed."""
    return _request_counts(url, model, ("success", "fail"))


def wait_until(condition, timeout_s: float = 30.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)


def in_flight(gateway) -> int:
    return sum(r.in_flight for r in gateway.service.triton.replicas)


# ---- raw gRPC (no SDK): what any caller sees on the wire ---------------------------
def raw_fuse_error(gateway, metadata, photo: bytes, template_id: str = TEMPLATE, timeout_s: float = 30.0):
    """(status code, ErrorInfo, RetryInfo or None, trailing metadata dict) of a failing Fuse."""
    with grpc.insecure_channel(target(gateway)) as channel:
        stub = pb_grpc.FaceFusionStub(channel)
        try:
            stub.Fuse(pb.FuseRequest(template_id=template_id, photo=photo), metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as error:
            trailing = dict(error.trailing_metadata() or ())
            status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
            info, retry = error_details_pb2.ErrorInfo(), None
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    detail.Unpack(info)
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
            return error.code(), info, retry, trailing
    raise AssertionError("the call succeeded")


# ---- photos ----------------------------------------------------------------------
