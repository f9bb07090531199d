"""The real gateway (in-process, port 0) in front of real tritonserver replicas."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from facefuse_client import AuthError, FacefuseClient, FacefuseError, RetryableError, TemplateNotFoundError
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facefuse.gateway.auth import add_key
from facefuse.gateway.server import GatewayThread
from facefuse.gateway.settings import GatewaySettings
from facefuse.server.triton import embedded_triton
from facefuse.triton_client import fusion_stages
from photo_bytes import rgb_of

SECRET = "integration-secret-for-hs256-tokens"
ISSUER, AUDIENCE = "facefuse-tests", "facefuse"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    root = tmp_path_factory.mktemp("gateway")
    keys_file = root / "keys.json"
    keys = {
        "full": add_key(keys_file, "full", "acme", ["fuse", "templates:read"], 1000, 1000, 64),
        "list-only": add_key(keys_file, "list-only", "viewer", ["templates:read"], 1000, 1000, 64),
        "slow": add_key(keys_file, "slow", "tiny", ["fuse", "templates:read"], 0.2, 1, 4),
    }
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = root / "jwt.pub"
    public_file.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"keys_file": keys_file, "keys": keys, "rsa": private, "public_file": public_file}


def gateway_settings(credentials, urls, **overrides) -> GatewaySettings:
    return GatewaySettings(
        triton_urls=urls, keys_file=credentials["keys_file"], jwt_hs256_secret=SECRET,
        jwt_rs256_public_key_file=credentials["public_file"], jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **overrides,
    )


@pytest.fixture(scope="module")
def gateway(triton, credentials):
    with GatewayThread(gateway_settings(credentials, [triton.grpc_url]), port=0) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway, credentials):
    with FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials["keys"]["full"]) as c:
        yield c


def token(key=SECRET, algorithm="HS256", **claims) -> str:
    body = {"sub": "svc", "tenant": "acme", "scope": "fuse templates:read", "iss": ISSUER, "aud": AUDIENCE,
            "exp": int(time.time()) + 300}
    body.update(claims)
    return jwt.encode(body, key, algorithm=algorithm)


@pytest.fixture(scope="module")
def spare_triton(settings, built_repository, template_store):
    """A second, separately started replica (tests stop, pause or kill it)."""
    with embedded_triton(settings) as server:
        yield server


def wait_until(condition, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


# ---- the API ---------------------------------------------------------------------------
def test_fuse_returns_a_poster_and_echoes_the_request_id(gateway, credentials, astronaut, template_store):
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    stub = pb_grpc.FaceFusionStub(channel)
    reply = stub.Fuse(
        pb.FuseRequest(photo=astronaut, template_id="hopper-portrait", request_id="req-42",
                       options=pb.FuseOptions(output_format=pb.PNG, add_label=False)),
        metadata=(("x-api-key", credentials["keys"]["full"]),), timeout=60,
    )
    assert reply.request_id == "req-42" and reply.poster.format == pb.PNG
    assert rgb_of(reply.poster.image).shape == template_store.load("hopper-portrait").image.shape
    channel.close()


def test_templates_health_and_reflection(gateway, client):
    assert {"hopper-portrait", "group-six"} <= {t.template_id for t in client.list_templates()}
    group = next(t for t in client.list_templates() if t.template_id == "group-six")
    assert group.face_count == 6 and (group.width, group.height) == (1280, 886)
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="facefuse.v1.FaceFusion"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "facefuse.v1.FaceFusion" in names
    channel.close()


def test_fuse_many_analyses_the_photo_once(gateway, client, triton_client, astronaut):
    stages = fusion_stages(triton_client)  # the cpu profile decodes in detect_faces, fuses in fuse_faces
    decoding, fusing = stages[0], "fuse_faces" if "fuse_faces" in stages else "fuse"

    def counts():
        stats = {m["name"]: m for m in triton_client.get_inference_statistics(as_json=True)["model_stats"]}
        return {name: int(stats[name]["inference_stats"]["success"].get("count", 0))
                for name in ("face_analyze", decoding, "face_fuse", fusing)}

    before = counts()
    # (Grace Hopper into the astronaut posters at fuse 80 is refused by the poster check.)
    posters = client.fuse_many(astronaut, ["astronaut-poster", "comic-astronaut", "group-six"])
    assert [p.template_id for p in posters] == ["astronaut-poster", "comic-astronaut", "group-six"]
    assert all(rgb_of(p.image).ndim == 3 for p in posters)
    # Triton records a model's statistics just after it answers: wait for the last ones.
    deadline = time.monotonic() + 10
    while True:
        after = counts()
        delta = {name: after[name] - before[name] for name in after}
        if delta[fusing] >= 3 and delta["face_fuse"] >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert delta == {"face_analyze": 1, decoding: 1, "face_fuse": 3, fusing: 3}


def test_several_photos_map_onto_faces_of_a_multi_face_template(client, astronaut, grace_hopper, template_store):
    poster = client.fuse_faces("group-six", [(astronaut, 0), (grace_hopper, 5)], output_format="png", add_label=False)
    group = template_store.load("group-six")
    image = rgb_of(poster.image)
    for index in range(6):
        x0, y0, x1, y1 = group.boxes[index][:4].astype(int)
        changed = np.any(image[y0:y1, x0:x1] != group.image[y0:y1, x0:x1], -1).mean()
        assert (changed > 0.3) == (index in (0, 5))


# ---- every reason, end to end ------------------------------------------------------------
def test_unknown_template_face_and_bad_options(client, astronaut):
    with pytest.raises(TemplateNotFoundError) as info:
        client.fuse(astronaut, "no-such-template")
    assert info.value.reason == "TEMPLATE_NOT_FOUND" and info.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(TemplateNotFoundError) as info:
        client.fuse(astronaut, "hopper-portrait", face_index=2)
    assert info.value.reason == "TEMPLATE_FACE_NOT_FOUND"
    with pytest.raises(FacefuseError) as info:
        client.fuse(astronaut, "hopper-portrait", fuse_degree=150)
    assert info.value.reason == "INVALID_ARGUMENT"


# ---- auth and quotas -----------------------------------------------------------------
def test_auth_cases(gateway, credentials, astronaut):
    target = f"127.0.0.1:{gateway.port}"
    cases = {
        "no credentials": dict(),
        "unknown key": dict(api_key="ffk_not-a-key"),
        "expired jwt": dict(token=token(exp=int(time.time()) - 10)),
        "wrong audience": dict(token=token(aud="someone-else")),
        "wrong issuer": dict(token=token(iss="someone-else")),
        "bad signature": dict(token=token(key="another-secret-of-enough-length!!")),
    }
    for name, creds in cases.items():
        with FacefuseClient(target, **creds) as c, pytest.raises(AuthError) as info:
            c.list_templates()
        assert info.value.reason == "UNAUTHENTICATED", name
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    rs256 = token(key=credentials["rsa"], algorithm="RS256")
    for creds in (dict(token=token()), dict(token=rs256), dict(api_key=credentials["keys"]["full"])):
        with FacefuseClient(target, **creds) as c:
            assert c.list_templates()
    for creds in (dict(api_key=credentials["keys"]["list-only"]), dict(token=token(scope="templates:read"))):
        with FacefuseClient(target, **creds) as c, pytest.raises(AuthError) as info:
            c.fuse(astronaut, "hopper-portrait")
        assert info.value.reason == "PERMISSION_DENIED" and info.value.code is grpc.StatusCode.PERMISSION_DENIED


def test_over_quota_is_rate_limited_with_a_retry_hint(gateway, credentials):
    with FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials["keys"]["slow"]) as c:
        c.list_templates()  # the one token of the burst
        with pytest.raises(RetryableError) as info:
            # The next token comes in 5 s, beyond this deadline: the SDK does not wait for
            # it (a shorter hint it would wait out), and the hint reaches the caller.
            c.list_templates(timeout_s=2)
    assert info.value.reason == "RATE_LIMITED" and info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < info.value.retry_after_s <= 5


def test_a_too_short_deadline_is_deadline_exceeded(triton, credentials, astronaut):
    # The gateway keeps deadline_margin_ms of every deadline for its own answer to travel
    # back. With 5 s kept, a 2 s deadline is too short for the gateway, and the caller still
    # waits long enough to hear it say so: the reason below is the server's, never one the
    # client's own timer made up (that one carries no status details and no trailer).
    settings = gateway_settings(credentials, [triton.grpc_url], deadline_margin_ms=5000.0)
    with GatewayThread(settings, port=0) as gateway, grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.FaceFusionStub(channel).Fuse(pb.FuseRequest(photo=astronaut, template_id="hopper-portrait"),
                                                 metadata=(("x-api-key", credentials["keys"]["full"]),), timeout=2.0)
    trailing = dict(info.value.trailing_metadata() or ())
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert trailing.get("facefuse-reason") == "DEADLINE_EXCEEDED" and "grpc-status-details-bin" in trailing
    assert "deadline leaves" in info.value.details()


# ---- replicas: shedding, failover, hedging ------------------------------------------------
def test_calls_beyond_the_replica_queue_limit_are_shed_as_overloaded(spare_triton, credentials, astronaut):
    settings = gateway_settings(credentials, [spare_triton.grpc_url], max_inflight_per_replica=1)
    with GatewayThread(settings, port=0) as gateway, \
            FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials["keys"]["full"]) as c:
        os.killpg(spare_triton.process.pid, signal.SIGSTOP)  # the first call now waits inside Triton
        try:
            first = threading.Thread(target=lambda: _swallow(lambda: c.fuse(astronaut, "hopper-portrait", timeout_s=5)))
            first.start()
            wait_until(lambda: gateway.service.triton.replicas[0].in_flight == 1, 10)
            with pytest.raises(RetryableError) as info:
                c.fuse(astronaut, "hopper-portrait")
        finally:
            os.killpg(spare_triton.process.pid, signal.SIGCONT)
        first.join()
    assert info.value.reason == "OVERLOADED" and info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.retry_after_s > 0


def _swallow(call):
    try:
        call()
    except FacefuseError:
        pass


def test_a_hedge_to_the_second_replica_wins_against_a_stalled_one(triton, spare_triton, credentials, astronaut):
    # The stalled replica is listed first, so it takes the first attempt.
    settings = gateway_settings(credentials, [spare_triton.grpc_url, triton.grpc_url], hedge_delay_ms=300)
    with GatewayThread(settings, port=0) as gateway, \
            FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials["keys"]["full"]) as c:
        os.killpg(spare_triton.process.pid, signal.SIGSTOP)
        try:
            poster = c.fuse(astronaut, "hopper-portrait", timeout_s=30)
        finally:
            os.killpg(spare_triton.process.pid, signal.SIGCONT)
        pool = gateway.service.triton
    assert rgb_of(poster.image).ndim == 3
    assert pool.hedges_sent >= 1 and pool.hedges_won >= 1


def test_calls_keep_succeeding_when_one_of_two_replicas_dies_under_load(triton, settings, built_repository,
                                                                         template_store, credentials, astronaut):
    with embedded_triton(settings) as doomed:
        gw_settings = gateway_settings(credentials, [doomed.grpc_url, triton.grpc_url], hedge_delay_ms=5000)
        with GatewayThread(gw_settings, port=0) as gateway, \
                FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials["keys"]["full"]) as c:
            killed = threading.Event()

            def call(i):
                if i == 6:
                    wait_until(lambda: gateway.service.triton.replicas[0].in_flight > 0, 30)
                    os.killpg(doomed.process.pid, signal.SIGKILL)
                    killed.set()
                return len(c.fuse(astronaut, "hopper-portrait", timeout_s=60).image)

            with ThreadPoolExecutor(max_workers=4) as pool:
                sizes = list(pool.map(call, range(16)))
    assert killed.is_set()
    assert all(size > 0 for size in sizes)


def test_the_client_cli_fuses_through_the_gateway(gateway, credentials, astronaut, grace_hopper, tmp_path, capsys):
    from facefuse_client.cli import main

    (tmp_path / "a.jpg").write_bytes(astronaut)
    (tmp_path / "g.jpg").write_bytes(grace_hopper)
    common = ["--target", f"127.0.0.1:{gateway.port}", "--api-key", credentials["keys"]["full"]]
    assert main([*common, "fuse", str(tmp_path / "a.jpg"), "--template", "hopper-portrait", "-o", str(tmp_path / "p.jpg")]) == 0
    assert rgb_of((tmp_path / "p.jpg").read_bytes()).shape == (600, 512, 3)
    printed = capsys.readouterr().out  # the poster's verdict, then the photo's: a clear frontal photo, no warnings
    assert re.search(r"\(quality \d\.\d\d(, warnings: [A-Z_, ]+)?; photo 1\.00\)$", printed.rstrip()), printed
    assert main([*common, "fuse", str(tmp_path / "a.jpg"), str(tmp_path / "g.jpg"), "--template", "group-six",
                 "--face", "1", "--face", "2", "-o", str(tmp_path / "group.png")]) == 0
    assert rgb_of((tmp_path / "group.png").read_bytes()).shape == (886, 1280, 3)
    assert main([*common, "fuse", str(tmp_path / "a.jpg"), "--template", "nope", "-o", str(tmp_path / "x.jpg")]) == 3
