"""Only the gateway reaches Triton, and no photo outlives its server.

- tritonserver listens on loopback only; its repository, logging, shared-memory and
  trace APIs refuse callers without the admin key (generated per start when none is
  configured), over gRPC and HTTP; a model load with a file override (Python code the
  server would run) is refused.
- The Python backend's shared-memory regions (request and response tensors: photos,
  posters) are readable by the server's user only and gone once the server is, even
  after `kill -9`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from facefuse.server.triton import (
    GRPC_GATEWAY_KEY_HEADER,
    SHM_DIR,
    SHM_PREFIX_ROOT,
    embedded_triton,
    group_members,
    shm_regions,
)
from facefuse.triton_client import POSTER_OUTPUT, FuseOptions, fusion_inputs

RESTRICTED_GRPC = {
    "model-repository": lambda c, h: c.get_model_repository_index(headers=h),
    "model-repository (unload)": lambda c, h: c.unload_model("no-such-model", headers=h),
    "logging": lambda c, h: c.get_log_settings(headers=h),
    "shared-memory (system)": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "shared-memory (system, register)": lambda c, h: c.register_system_shared_memory("r", "/r", 64, headers=h),
    "shared-memory (cuda)": lambda c, h: c.get_cuda_shared_memory_status(headers=h),
    "trace": lambda c, h: c.get_trace_settings(headers=h),
}
RESTRICTED_HTTP = {
    "model-repository": ("POST", "/v2/repository/index"),
    "logging": ("GET", "/v2/logging"),
    "shared-memory (system)": ("GET", "/v2/systemsharedmemory/status"),
    "shared-memory (cuda)": ("GET", "/v2/cudasharedmemory/status"),
    "trace": ("GET", "/v2/trace/setting"),
}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp*);
    IPv4-mapped IPv6 addresses are given as the IPv4 address they map."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


def test_triton_listens_on_loopback_only(triton):
    for port in (triton.grpc_port, triton.http_port, triton.metrics_port):
        assert listening_addresses(port) == {"127.0.0.1"}, port


@pytest.mark.parametrize("api", list(RESTRICTED_GRPC))
def test_each_restricted_grpc_api_refuses_a_caller_without_the_admin_key(triton, triton_client, api):
    call = RESTRICTED_GRPC[api]
    for headers in (None, {"triton-grpc-protocol-admin-key": "a-guess"}):
        with pytest.raises(InferenceServerException, match="restricted"):
            call(triton_client, headers)
    try:
        call(triton_client, triton.admin_grpc_headers)
    except InferenceServerException as exc:  # opened: any refusal now is about the request itself
        assert "restricted" not in str(exc)


def http_status(base_url: str, method: str, path: str, headers: dict) -> int:
    """Triton's HTTP answer status to an empty call with these headers."""
    request = urllib.request.Request(f"{base_url}{path}", method=method, headers=headers,
                                     data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("api", list(RESTRICTED_HTTP))
def test_each_restricted_http_api_refuses_a_caller_without_the_admin_key(triton, api):
    method, path = RESTRICTED_HTTP[api]

    def status(headers: dict) -> int:
        return http_status(triton.http_url, method, path, headers)

    assert status({}) == 403
    assert status({"admin-key": "a-guess"}) == 403
    assert status(triton.admin_http_headers) == 200


# What only the gateway (and facefuse's own tools) may call: they hold the gateway key.
GATEWAY_GRPC = {
    "metadata (server)": lambda c, h: c.get_server_metadata(headers=h),
    "metadata (model)": lambda c, h: c.get_model_metadata("face_fusion", headers=h),
    "model-config": lambda c, h: c.get_model_config("face_fusion", headers=h),
    "statistics": lambda c, h: c.get_inference_statistics("face_fusion", headers=h),
}
GATEWAY_HTTP = {
    "inference": ("POST", "/v2/models/face_fusion/infer"),
    "metadata": ("GET", "/v2/models/face_fusion"),
    "model-config": ("GET", "/v2/models/face_fusion/config"),
    "statistics": ("GET", "/v2/models/face_fusion/stats"),
}


def test_a_direct_inference_call_without_the_gateway_key_is_refused(triton, astronaut):
    inputs = fusion_inputs(astronaut, "hopper-portrait", 0, FuseOptions())
    bare = grpcclient.InferenceServerClient(triton.grpc_url)  # a local user skipping the gateway
    try:
        for headers in (None, {GRPC_GATEWAY_KEY_HEADER: "a-guess"}, triton.admin_grpc_headers):
            with pytest.raises(InferenceServerException, match="restricted"):
                bare.infer("face_fusion", inputs, outputs=POSTER_OUTPUT, headers=headers)
        # The admin key does not open inference: it is a different key.
        with pytest.raises(InferenceServerException, match="restricted"):
            bare.infer("face_fusion", inputs, outputs=POSTER_OUTPUT,
                       headers={GRPC_GATEWAY_KEY_HEADER: triton.admin_key})
        poster = bare.infer("face_fusion", inputs, outputs=POSTER_OUTPUT, headers=triton.gateway_grpc_headers)
        assert poster.as_numpy("poster").size > 0
        assert bare.is_server_ready() and bare.is_model_ready("face_fusion")  # health stays open for probes
    finally:
        bare.close()


@pytest.mark.parametrize("api", list(GATEWAY_GRPC))
def test_metadata_config_and_statistics_need_the_gateway_key_over_grpc(triton, api):
    call = GATEWAY_GRPC[api]
    bare = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        for headers in (None, {GRPC_GATEWAY_KEY_HEADER: "a-guess"}):
            with pytest.raises(InferenceServerException, match="restricted"):
                call(bare, headers)
        assert call(bare, triton.gateway_grpc_headers)
    finally:
        bare.close()


@pytest.mark.parametrize("api", list(GATEWAY_HTTP))
def test_inference_metadata_config_and_statistics_need_the_gateway_key_over_http(triton, api):
    method, path = GATEWAY_HTTP[api]

    def status(headers: dict) -> int:
        return http_status(triton.http_url, method, path, headers)

    assert status({}) == 403
    assert status({"gateway-key": "a-guess"}) == 403
    assert status(triton.admin_http_headers) == 403
    if method == "POST":  # opened: an empty inference body is then refused for itself, not for the key
        assert status(triton.gateway_http_headers) not in (200, 403)
    else:
        assert status(triton.gateway_http_headers) == 200


def test_a_model_load_with_a_file_override_is_refused_and_its_code_never_runs(triton, triton_client, tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('ran')\nclass TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
    config = json.dumps({"backend": "python", "max_batch_size": 0,
                         "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
                         "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}]})
    with pytest.raises(InferenceServerException, match="restricted"):
        triton_client.load_model("override-probe", config=config, files={"file:1/model.py": code.encode()})
    assert not marker.exists()
    index = triton_client.get_model_repository_index(headers=triton.admin_grpc_headers)
    assert "override-probe" not in {m.name for m in index.models}


def test_shared_memory_regions_are_private_and_gone_after_kill_9(settings, built_repository, template_store):
    # What a server killed before this change would have left, and a region of a server
    # whose starter still runs (pid 1): the start removes the first only.
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = SHM_DIR / f"{SHM_PREFIX_ROOT}{dead.pid}_deadbeef_region"
    alive = SHM_DIR / f"{SHM_PREFIX_ROOT}1_c0ffee00_region"
    leftover.write_bytes(b"a photo")
    alive.write_bytes(b"a photo")
    ours_before = shm_regions(SHM_PREFIX_ROOT)
    try:
        with embedded_triton(settings) as server:
            assert not leftover.exists() and alive.exists()
            _kill_9_and_check(server)
    finally:
        alive.unlink()
    assert shm_regions(SHM_PREFIX_ROOT) == [r for r in ours_before if r.exists()]


def _kill_9_and_check(server) -> None:
    """kill -9 of tritonserver alone, then the stop every crash gets: nothing remains."""
    regions = server.regions()
    assert len(regions) >= 5  # one per Python-backend stub
    for region in regions:
        assert region.stat().st_mode & 0o077 == 0, region  # no group or other access
    if server.private_shm:  # its own /dev/shm: nothing of it in the machine's
        assert not shm_regions(server.shm_prefix)
    stubs = [pid for pid in group_members(server.process.pid) if pid != server.process.pid]
    assert stubs
    os.kill(server.process.pid, signal.SIGKILL)  # tritonserver only: its stubs are orphaned
    server.process.wait()
    server.stop()  # what every stop does after a crash: stubs killed, regions removed
    assert not group_members(server.process.pid)
    assert not any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
               for pid in stubs)
    assert not shm_regions(server.shm_prefix)
