"""`facefuse loadtest run`: servers (unless given), Locust headless, metrics, the report.

Locust runs as its own processes (one, or a master and N workers for distributed
mode) from `loadtest/locustfile.py`; Triton's metrics endpoint is sampled during the run;
the capacity report is written from Locust's full-history CSV and those samples.
Video jobs (plan.video_share of the users) are fused by the video worker that every
gateway runs by default (FACEFUSE_VIDEO_WORKER_IN_GATEWAY), in the gateway under test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from facefuse.capacity.mix import DEFAULT_VIDEO_TEMPLATE, POSTERS_PER_REQUEST
from facefuse.capacity.report import write_report
from facefuse.capacity.triton_metrics import MetricsRecorder
from facefuse.server.triton import configured_gateway_key
from facefuse.settings import get_settings, project_root
from facefuse.triton_client import instance_counts, keyed_client

LOCUSTFILE = project_root() / "loadtest" / "locustfile.py"


@dataclass(frozen=True)
class LoadTestPlan:
    shape: str = "ramp"
    max_users: int = 8
    step_s: float = 10.0
    duration_s: float = 30.0
    workers: int = 0
    p99_ms: float = 2000.0
    video_share: float = 0.0  # of the users: they submit video jobs instead of photo calls
    video_template: str = DEFAULT_VIDEO_TEMPLATE


def locust_commands(plan: LoadTestPlan, host: str, api_key: str, csv_prefix: Path) -> list[list[str]]:
    """The Locust process(es): one headless runner, or a headless master plus workers."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host,
            "--shape", plan.shape, "--max-users", str(plan.max_users), "--step-s", str(plan.step_s),
            "--duration-s", str(plan.duration_s), "--api-key", api_key, "--loglevel", "WARNING",
            "--video-share", str(plan.video_share), "--video-template", plan.video_template]
    runner = base + ["--headless", "--csv", str(csv_prefix), "--csv-full-history", "--only-summary"]
    if plan.workers <= 0:
        return [runner]
    master = runner + ["--master", "--expect-workers", str(plan.workers), "--master-bind-host", "127.0.0.1"]
    workers = [base + ["--worker", "--master-host", "127.0.0.1"] for _ in range(plan.workers)]
    return [master, *workers]


def run_locust(commands: list[list[str]], timeout_s: float) -> int:
    """Start the master (or the single runner) and any workers; wait for the master."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    processes = [subprocess.Popen(cmd, env=env) for cmd in commands]
    try:
        return processes[0].wait(timeout=timeout_s)
    finally:
        for process in processes[1:]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for process in processes:
            if process.poll() is None:
                process.kill()


def expected_seconds(plan: LoadTestPlan) -> float:
    from facefuse.capacity.shapes import ramp_levels

    return plan.step_s * len(ramp_levels(plan.max_users)) if plan.shape == "ramp" else plan.duration_s


@contextlib.contextmanager
def local_stack():
    """Triton + the gateway (its own process), for runs that are not given a target."""
    from facefuse import stack

    with stack.gateway_process() as (triton, port, key):
        yield f"127.0.0.1:{port}", triton.metrics_url, key, triton.grpc_url, triton.gateway_key


def run_load_test(plan: LoadTestPlan, out_dir: Path, command: str, target: tuple | None = None,
                  device: str | None = None, gpus_per_replica: int = 0, echo=print) -> dict:
    """target: (gateway host:port, Triton metrics URL, API key, Triton gRPC URL) or None to start a stack.
    device and gpus_per_replica describe the target's replica in the report (the planner sizes by them);
    without a target they describe this machine."""
    # Not imported here: importing locust monkey-patches this process for gevent.
    if importlib.util.find_spec("locust") is None:
        raise RuntimeError("locust is not installed: pip install -e '.[loadtest]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix = out_dir / "locust"
    stack = contextlib.nullcontext((*target, configured_gateway_key(get_settings()))) if target else local_stack()
    with stack as (host, metrics_url, api_key, triton_url, gateway_key):
        client = keyed_client(triton_url, gateway_key)
        instances = instance_counts(client)
        client.close()
        template = video_template_info(host, api_key, plan.video_template) if plan.video_share > 0 else None
        commands = locust_commands(plan, host, api_key, csv_prefix)
        echo(f"locust: {len(commands)} process(es) against {host}, shape {plan.shape}, up to {plan.max_users} users")
        with MetricsRecorder([metrics_url], interval_s=2.0) as recorder:
            code = run_locust(commands, timeout_s=expected_seconds(plan) + 180)
        samples = recorder.samples
    if code not in (0, 1):  # 1: Locust saw failed requests, still a result worth reporting
        raise RuntimeError(f"locust exited with code {code}")
    if not target:
        device, gpus_per_replica = f"cpu x{os.cpu_count() or 1} (embedded Triton, cpu profile)", 0
    result = write_report(
        out_dir, Path(f"{csv_prefix}_stats_history.csv"), samples, plan.p99_ms,
        POSTERS_PER_REQUEST, device, gpus_per_replica, instances, command, template,
    )
    echo(f"report: {out_dir / 'report.md'}; sustainable {result['capacity']['sustainable_posters_per_s']} posters/s, "
         f"bottleneck {result['bottleneck_stage']}")
    if "video" in result:
        v = result["video"]
        echo(f"video: {v['jobs_done']} jobs done, {v['jobs_failed']} failed; job p50 {v['job_p50_ms']:g} ms, "
             f"p99 {v['job_p99_ms']:g} ms; {v['frames_per_s']:g} frames/s per worker")
    return result


def video_template_info(host: str, api_key: str, template_id: str) -> dict:
    """The jobs' template as the gateway lists it (its fps sizes videos in the planner)."""
    import grpc
    from facefuse_client.v1 import facefuse_pb2 as pb
    from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

    with grpc.insecure_channel(host) as channel:
        listed = pb_grpc.VideoJobsStub(channel).ListVideoTemplates(
            pb.ListVideoTemplatesRequest(), timeout=30, metadata=(("x-api-key", api_key),))
    for template in listed.templates:
        if template.template_id == template_id:
            return {"template_id": template_id, "fps": round(template.fps, 3), "frame_count": template.frame_count}
    raise RuntimeError(f"video template {template_id!r} is not registered at {host}: "
                       f"`facefuse templates add-video` it or pick one with --video-template")



def shell_command(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
