"""Shared-memory leftovers and restart policy, without a tritonserver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facefuse.server import supervisor as supervisor_module
from facefuse.server import triton
from facefuse.server.supervisor import TritonGaveUp, TritonSupervisor
from facefuse.settings import Settings


def test_only_leftover_regions_of_dead_servers_are_removed_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(triton, "SHM_DIR", tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f"{triton.SHM_PREFIX_ROOT}{dead.pid}_0a0b0c0d_region"
    live_other = tmp_path / f"{triton.SHM_PREFIX_ROOT}{os.getppid()}_0a0b0c0d_region"  # its starter still runs
    own = tmp_path / f"{triton.SHM_PREFIX_ROOT}{os.getpid()}_0a0b0c0d_region"  # a server of this process
    not_ours = tmp_path / "triton_python_backend_shm_region_1234"  # another project's server
    for region in (leftover, live_other, own, not_ours):
        region.write_bytes(b"photo bytes")
    assert triton.remove_orphaned_shm_regions() == 1
    assert not leftover.exists() and live_other.exists() and own.exists() and not_ours.exists()


def test_the_admin_apis_take_the_admin_key_and_inference_the_gateway_key():
    flags = triton.restriction_flags("adm1n", "g4te")
    admin = "model-repository,shared-memory,logging,trace"
    gateway = "inference,metadata,model-config,statistics"
    assert flags == [f"--grpc-restricted-protocol={admin}:admin-key=adm1n", f"--http-restricted-api={admin}:admin-key=adm1n",
                     f"--grpc-restricted-protocol={gateway}:gateway-key=g4te",
                     f"--http-restricted-api={gateway}:gateway-key=g4te"]
    # Health stays open for probes, and no group is in both (Triton refuses that).
    assert "health" not in ",".join(flags)
    assert not set(triton.RESTRICTED_APIS) & set(triton.GATEWAY_APIS)


def test_the_gateway_key_plugin_adds_its_header_without_changing_the_callers_headers():
    from tritonclient._request import Request

    from facefuse.triton_client import SendHeaders

    own = {"traceparent": "00-abc"}
    request = Request(own)
    SendHeaders(triton.gateway_grpc_headers("g4te"))(request)
    assert request.headers == {"triton-grpc-protocol-gateway-key": "g4te", "traceparent": "00-abc"}
    assert own == {"traceparent": "00-abc"}
    assert triton.gateway_grpc_headers(None) == {}


class _DeadServer:
    log_path = Path("tritonserver.log")
    private_shm = True

    class process:
        returncode = -9

    def reap(self):
        pass

    def log_tail(self):
        return "(log)"

    def listening(self):
        return "here"


def test_restarts_back_off_and_stop_at_the_limit(monkeypatch):
    now = [0.0]
    slept = []
    settings = Settings(triton_restart_backoff_s=1, triton_restart_max_backoff_s=4, triton_max_restarts=3,
                        triton_restart_window_s=100)
    supervisor = TritonSupervisor(settings, None, echo=lambda *_: None, clock=lambda: now[0],
                                  sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    supervisor.server = _DeadServer()
    monkeypatch.setattr(supervisor, "start", lambda: None)
    for _ in range(3):
        supervisor.restart()
    assert slept == [1, 2, 4] and len(supervisor.recoveries_s) == 3
    with pytest.raises(TritonGaveUp, match="3"):
        supervisor.restart()
    now[0] += 200  # a quiet window later, restarts are allowed again
    supervisor.restart()
    assert slept[-1] == 1


def test_the_supervisor_reads_like_the_running_server():
    supervisor = TritonSupervisor(Settings(), None)
    supervisor.server = _DeadServer()
    assert supervisor.listening() == "here"
    assert supervisor_module.TritonSupervisor.backoff_s(supervisor, 10) == Settings().triton_restart_max_backoff_s


def test_a_start_that_dies_before_it_is_ready_spends_no_restart_budget_but_a_run_of_them_gives_up(monkeypatch):
    echoed = []
    settings = Settings(triton_restart_backoff_s=1, triton_max_restarts=1, triton_max_failed_starts=3,
                        triton_restart_window_s=100)
    supervisor = TritonSupervisor(settings, None, echo=echoed.append, clock=lambda: 0.0, sleep=lambda s: None)
    supervisor.server = _DeadServer()
    outcomes = iter([triton.TritonStartError("tritonserver was killed by SIGSEGV before it was ready (log x.1)"), None])

    def start():
        outcome = next(outcomes)
        if outcome:
            raise outcome

    monkeypatch.setattr(supervisor, "start", start)
    supervisor.restart()  # one death of a ready server, one failed start, then ready
    assert len(supervisor.recoveries_s) == 1
    assert any("was killed by SIGKILL" in line for line in echoed)
    assert any("killed by SIGSEGV before it was ready" in line for line in echoed)

    supervisor2 = TritonSupervisor(settings, None, echo=lambda *_: None, clock=lambda: 0.0, sleep=lambda s: None)
    supervisor2.server = _DeadServer()
    monkeypatch.setattr(supervisor2, "start", lambda: (_ for _ in ()).throw(triton.TritonStartError("exited with code 1")))
    with pytest.raises(TritonGaveUp, match="3 times in a row"):
        supervisor2.restart()


def test_exit_descriptions_name_the_signal():
    assert triton.exit_description(-9) == "was killed by SIGKILL"
    assert triton.exit_description(-11) == "was killed by SIGSEGV"
    assert triton.exit_description(1) == "exited with code 1"


def test_every_start_keeps_the_logs_of_the_starts_before_it(tmp_path):
    log = tmp_path / "tritonserver-8001.log"
    for n in range(7):
        triton.rotate_logs(log, keep=3)
        log.write_text(f"start {n}")
    assert log.read_text() == "start 6"
    assert [(tmp_path / f"{log.name}.{n}").read_text() for n in (1, 2, 3)] == ["start 5", "start 4", "start 3"]
    assert not (tmp_path / f"{log.name}.4").exists()


def test_the_server_environment_carries_no_facefuse_secret(monkeypatch):
    monkeypatch.setenv("FACEFUSE_TRITON_ADMIN_KEY", "adm1n")
    monkeypatch.setenv("FACEFUSE_GATEWAY_JWT_SECRET", "jwt")
    monkeypatch.setenv("FACEFUSE_TEMPLATE_DIR", "/templates")
    env = triton.server_environment()
    assert "FACEFUSE_TRITON_ADMIN_KEY" not in env and "FACEFUSE_GATEWAY_JWT_SECRET" not in env
    assert env["FACEFUSE_TEMPLATE_DIR"] == "/templates"


def test_the_launch_finds_the_highest_directory_a_user_cannot_enter():
    import pwd
    import shutil
    import tempfile

    from facefuse.server.launch import hidden_ancestor

    nobody = pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/nonexistent", "/usr/sbin/nologin"))
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own folders are 0700 all the way down
    try:
        base.chmod(0o755)
        outer, inner = base / "outer", base / "outer" / "inner"
        (inner / "models").mkdir(parents=True)
        outer.chmod(0o755)
        inner.chmod(0o700)
        assert hidden_ancestor(inner / "models" / "fuse", nobody) == inner
        outer.chmod(0o750)  # nobody is neither owner nor group: no search permission
        assert hidden_ancestor(inner / "models" / "fuse", nobody) == outer
        outer.chmod(0o755)
        inner.chmod(0o711)
        assert hidden_ancestor(inner / "models" / "fuse", nobody) is None
    finally:
        shutil.rmtree(base)
