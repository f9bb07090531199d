"""`facefuse bench video-priority`: photo latency alone and beside a running video job.

Triton's `fuse` queues photo requests (the default priority level) before video frames
(the low level the video worker sends them at), and the worker gives way to photo calls
in flight. This measures what a photo caller sees: one caller's Fuse latency with no
video work, then while video jobs run on the same replica, alternated for `rounds`
(the machine is shared, so drift falls on both phases alike). No assertion: figures to
video-priority.json and .md.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facefuse import samples

PHOTO_TEMPLATE = "astronaut-poster"


@dataclass
class Phase:
    name: str
    round: int
    latencies_ms: list[float]
    video_frames_done: int = 0  # frames the jobs fused during this phase (0 alone)

    def figures(self) -> dict:
        values = np.array(self.latencies_ms)
        return {"phase": self.name, "round": self.round, "calls": len(values),
                "p50_ms": round(float(np.percentile(values, 50)), 1), "p90_ms": round(float(np.percentile(values, 90)), 1),
                "p99_ms": round(float(np.percentile(values, 99)), 1), "mean_ms": round(float(values.mean()), 1),
                "video_frames_done": self.video_frames_done}


@dataclass
class PriorityBench:
    machine: dict
    template_id: str
    calls_per_phase: int
    phases: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _photo_calls(client, photo: bytes, calls: int) -> list[float]:
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        client.fuse(photo, PHOTO_TEMPLATE)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def _beside_video(client, photo: bytes, template_id: str, calls: int) -> tuple[list[float], int]:
    """Photo calls while jobs run: two jobs queued so that one is running throughout."""
    jobs = [client.videos.submit(photo, template_id) for _ in range(2)]
    deadline = time.monotonic() + 60
    while client.videos.get(jobs[0].job_id).state == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    before = sum(client.videos.get(j.job_id).frames_done for j in jobs)
    latencies = _photo_calls(client, photo, calls)
    states = [client.videos.get(j.job_id) for j in jobs]
    for job in states:
        if not job.finished:
            client.videos.cancel(job.job_id)
    return latencies, sum(j.frames_done for j in states) - before


def run_priority_bench(template_id: str, calls: int, rounds: int, out_dir: Path, echo=print) -> PriorityBench:
    from facefuse import stack
    from facefuse_client import FacefuseClient

    photo = samples.astronaut()
    report = PriorityBench({"cpu_count": os.cpu_count() or 1}, template_id, calls)
    by_phase: dict[str, list[float]] = {"alone": [], "beside video": []}
    frames_by_phase = {"alone": 0, "beside video": 0}
    with stack.gateway_process() as (_triton, port, key):
        client = FacefuseClient(f"127.0.0.1:{port}", api_key=key, timeout_s=120)
        try:
            _photo_calls(client, photo, 3)  # warm-up
            for number in range(rounds):
                alone = Phase("alone", number, _photo_calls(client, photo, calls))
                latencies, frames = _beside_video(client, photo, template_id, calls)
                beside = Phase("beside video", number, latencies, frames)
                for phase in (alone, beside):
                    report.phases.append(phase.figures())
                    by_phase[phase.name] += phase.latencies_ms
                    frames_by_phase[phase.name] += phase.video_frames_done
                    echo(json.dumps(phase.figures()))
        finally:
            client.close()
    report.summary = {name: Phase(name, -1, values, frames_by_phase[name]).figures() for name, values in by_phase.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "video-priority.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out_dir / "video-priority.md").write_text(_markdown(report))
    return report


def _markdown(report: PriorityBench) -> str:
    lines = ["# Photo latency beside a video job", "",
             f"One caller's Fuse ({PHOTO_TEMPLATE}) calls, {report.calls_per_phase} per phase, alone and while "
             f"`{report.template_id}` jobs run on the same replica (cpu x{report.machine['cpu_count']}).", "",
             "| phase | round | calls | p50 ms | p90 ms | p99 ms | mean ms | video frames fused meanwhile |",
             "|---|---|---|---|---|---|---|---|"]
    for p in [*report.phases, *report.summary.values()]:
        label = "all" if p["round"] < 0 else p["round"]
        lines.append(f"| {p['phase']} | {label} | {p['calls']} | {p['p50_ms']} | {p['p90_ms']} | {p['p99_ms']} | "
                     f"{p['mean_ms']} | {p['video_frames_done']} |")
    return "\n".join(lines) + "\n"

