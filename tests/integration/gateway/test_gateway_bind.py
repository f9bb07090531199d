"""A gateway that cannot have its port: one line naming the port and the setting, a
non-zero exit, and nothing started (no video worker, no job store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_helpers import gateway_settings

from facefuse.gateway.server import GatewayBindError, GatewayThread
from facefuse.video.settings import VideoSettings

BIN = Path(sys.executable).parent
NOWHERE = "127.0.0.1:9"  # no Triton: binding comes first, so none is needed


def test_gateway_run_on_a_taken_port_prints_one_line_and_exits_non_zero(tmp_path):
    jobs = tmp_path / "jobs"
    env = {**os.environ, "FACEFUSE_VIDEO_JOBS_DIR": str(jobs), "FACEFUSE_GATEWAY_METRICS_PORT": "0"}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([str(BIN / "facefuse"), "gateway", "run", "--port", str(port), "--triton-url", NOWHERE],
                                capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
    assert "FACEFUSE_GATEWAY_PORT" in lines[0] and "--port" in lines[0]
    assert not jobs.exists()  # no job store was opened and no video worker started


def test_a_second_gateway_on_a_gateways_port_fails_instead_of_sharing_it(credentials, tmp_path):
    # gRPC binds with SO_REUSEPORT unless told not to: two gateways would then split the
    # port's connections between them without a word.
    settings = gateway_settings(credentials, [NOWHERE])
    with GatewayThread(settings, port=0, video_settings=VideoSettings(jobs_dir=tmp_path / "first")) as first:
        second = GatewayThread(settings, port=first.port, video_settings=VideoSettings(jobs_dir=tmp_path / "second"))
        with pytest.raises(GatewayBindError, match=f"127.0.0.1:{first.port}.*FACEFUSE_GATEWAY_PORT"):
            with second:
                pass
    assert not (tmp_path / "second").exists()  # nothing of the second one was started
