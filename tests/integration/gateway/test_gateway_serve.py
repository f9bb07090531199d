"""The README's run path: `facefuse serve` starts Triton and the gateway, `facefuse fuse`
goes through the gateway, and one Ctrl-C (SIGINT) stops both."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from facefuse.server.triton import free_port

BIN = Path(sys.executable).parent


def processes_with_argument(argument: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_serve(**extra_env: str):
    """`facefuse serve` on free ports, once it says the gateway is ready."""
    triton_grpc, gateway_port = free_port(), free_port()
    env = dict(os.environ, FACEFUSE_TRITON_GRPC_PORT=str(triton_grpc), FACEFUSE_TRITON_HTTP_PORT=str(free_port()),
               FACEFUSE_TRITON_METRICS_PORT=str(free_port()), FACEFUSE_GATEWAY_HOST="127.0.0.1", **extra_env)
    process = subprocess.Popen([str(BIN / "facefuse"), "serve", "--gateway-port", str(gateway_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output = []
    try:
        while not any("Gateway ready" in line for line in output):
            try:
                output.append(lines.get(timeout=180))
            except queue.Empty:
                pytest.fail("`facefuse serve` printed no 'Gateway ready' within 180 s:\n" + "".join(output))
            if process.poll() is not None and lines.empty():
                pytest.fail(f"`facefuse serve` exited with {process.returncode}:\n" + "".join(output))
        yield process, gateway_port, triton_grpc, lines, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def serve(built_repository, template_store):
    with running_serve() as running:
        yield running


def test_serve_fuses_through_the_gateway_and_one_ctrl_c_stops_both(serve, astronaut, tmp_path):
    process, gateway_port, triton_grpc, lines, output = serve
    assert processes_with_argument(f"--grpc-port={triton_grpc}")  # tritonserver is up
    photo, poster = tmp_path / "astronaut.jpg", tmp_path / "poster.jpg"
    photo.write_bytes(astronaut)
    fused = subprocess.run([str(BIN / "facefuse"), "fuse", str(photo), "--template", "hopper-portrait", "-o", str(poster),
                            "--target", f"127.0.0.1:{gateway_port}"], capture_output=True, text=True, timeout=120)
    assert fused.returncode == 0, fused.stderr
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    while not lines.empty():
        output.append(lines.get())
    assert "stopped" in "".join(output)
    assert not processes_with_argument(f"--grpc-port={triton_grpc}")
    assert not accepts_connections(gateway_port)


def gateway_health(port: int) -> str:
    """SERVING / NOT_SERVING, or UNREACHABLE when the gateway does not answer."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_serve_restarts_a_killed_tritonserver_while_the_gateway_answers_unavailable(serve, astronaut, tmp_path):
    import time

    from facefuse_client import FacefuseClient, RetryableError

    from facefuse.gateway.dev_key import dev_key_path
    from facefuse.gateway.settings import GatewaySettings
    from facefuse.server.triton import group_members

    process, gateway_port, triton_grpc, lines, output = serve
    assert "Triton ready: gRPC 127.0.0.1:" in "".join(output) and "Gateway ready on 127.0.0.1:" in "".join(output)
    (old_pid,) = processes_with_argument(f"--grpc-port={triton_grpc}")
    key = dev_key_path(GatewaySettings()).read_text().strip()
    with FacefuseClient(f"127.0.0.1:{gateway_port}", api_key=key) as client:
        assert client.fuse(astronaut, "hopper-portrait").image
        assert gateway_health(gateway_port) == "SERVING"

        os.kill(old_pid, signal.SIGKILL)
        seen, refusals = set(), []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            seen.add(gateway_health(gateway_port))
            try:
                client.fuse(astronaut, "hopper-portrait", timeout_s=10)
                if "NOT_SERVING" in seen:
                    break
            except RetryableError as error:
                refusals.append((error.reason, error.retry_after_s))
            time.sleep(0.2)

    assert "NOT_SERVING" in seen and "UNREACHABLE" not in seen  # the gateway stayed up and said so
    assert refusals and all(reason == "UNAVAILABLE" and retry_after and retry_after > 0
                            for reason, retry_after in refusals)
    assert not group_members(old_pid)  # no stub of the killed server survives it
    new_pids = processes_with_argument(f"--grpc-port={triton_grpc}")
    assert new_pids and old_pid not in new_pids
    while not lines.empty():
        output.append(lines.get())
    assert "restarting" in "".join(output) and "ready again after" in "".join(output)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert not processes_with_argument(f"--grpc-port={triton_grpc}")


def test_ten_kill_9s_under_load_each_end_in_a_ready_server_and_only_ready_deaths_spend_the_budget(
        built_repository, template_store, astronaut):
    """Restarts are plain execs from serve (no fork of the process running the gateway's
    gRPC threads), so none may crash by itself; each kill -9 waits until the server
    before it served again."""
    import time

    from facefuse_client import FacefuseClient, FacefuseError, RetryableError

    from facefuse.gateway.dev_key import dev_key_path
    from facefuse.gateway.settings import GatewaySettings

    kills = 10
    budget = dict(FACEFUSE_TRITON_MAX_RESTARTS=str(kills), FACEFUSE_TRITON_RESTART_BACKOFF_S="0.2",
                  FACEFUSE_TRITON_RESTART_MAX_BACKOFF_S="0.5")
    with running_serve(**budget) as (process, gateway_port, triton_grpc, lines, output):
        key = dev_key_path(GatewaySettings()).read_text().strip()
        stop = threading.Event()
        successes, failures = [], []

        def caller():
            with FacefuseClient(f"127.0.0.1:{gateway_port}", api_key=key) as client:
                while not stop.is_set():
                    try:
                        client.fuse(astronaut, "hopper-portrait", timeout_s=20)
                        successes.append(time.monotonic())
                    except RetryableError:
                        time.sleep(0.1)  # the server is restarting: UNAVAILABLE with a retry-after
                    except FacefuseError as error:
                        failures.append(repr(error))

        callers = [threading.Thread(target=caller, daemon=True) for _ in range(2)]
        for thread in callers:
            thread.start()

        def read_output(until, timeout_s: float) -> str:
            deadline = time.monotonic() + timeout_s
            while not until("".join(output)) and time.monotonic() < deadline and process.poll() is None:
                try:
                    output.append(lines.get(timeout=0.5))
                except queue.Empty:
                    pass
            return "".join(output)

        try:
            for n in range(1, kills + 1):
                served_before = len(successes)
                deadline = time.monotonic() + 120
                while len(successes) == served_before and time.monotonic() < deadline:
                    time.sleep(0.1)  # spaced by the restart: the server before this one served
                assert len(successes) > served_before, f"no call served before kill {n}:\n{''.join(output)}"
                (pid,) = processes_with_argument(f"--grpc-port={triton_grpc}")
                os.kill(pid, signal.SIGKILL)
                text = read_output(lambda text, n=n: text.count("ready again after") >= n, 180)
                assert text.count("ready again after") == n, f"restart {n} did not succeed:\n{text}"
        finally:
            stop.set()
            for thread in callers:
                thread.join(timeout=60)

        text = "".join(output)
        assert process.poll() is None, text  # serve did not give up: every death was of a ready server
        assert "failed to start again" not in text and "SIGSEGV" not in text and "fork" not in text, text
        assert text.count("was killed by SIGKILL") == kills
        assert not failures, failures
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
