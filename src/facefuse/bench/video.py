"""`facefuse bench video`: fused-video frames/s on Triton vs a hand-rolled baseline.

In one run, on one machine, the same video template and photo:
- Triton: the job worker's path (face_analyze once, then every usable frame as its own
  request to Triton's `fuse`, `frames_in_flight` at a time, so the dynamic batcher and
  the model's instances share them; crop, paste, label and H.264 encoding here);
- baseline: the same fuse_video with the fuse ONNX run in-process, one ONNX Runtime
  session per core (one thread each, as Triton's instances get) and as many frames at
  once, no server.
Runs alternate (Triton, baseline, baseline, Triton, ...) so both see the same minutes
of this shared machine. Figures go to JSON and Markdown; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facefuse import samples
from facefuse.bench.photo import _server_cpu_ms
from facefuse.gateway.triton import TritonPool
from facefuse.jobs.worker import TritonFrameFuser
from facefuse.models_admin.releases import serving_model_path
from facefuse.settings import get_settings
from facefuse.triton_client import ANALYZE_OUTPUTS, analyze_inputs, instance_counts
from facefuse.video import media
from facefuse.video.fusion import StageTimes, VideoOptions, fuse_video
from facefuse.video.settings import VideoSettings, get_video_settings
from facefuse.video.templates import VideoTemplateStore

CLIP_SECONDS = 15.0


@dataclass
class VideoRun:
    path: str  # triton or baseline
    frames: int
    seconds: float
    frames_per_s: float
    stage_s: dict
    # CPU time per frame, by process (Triton: tritonserver, each model's stubs, and this
    # client process; baseline: this process): robust to other load on a shared machine.
    cpu_ms_per_frame: dict = field(default_factory=dict)


@dataclass
class VideoBenchReport:
    machine: dict
    template: dict
    runs: list[VideoRun] = field(default_factory=list)
    # Triton's own statistics for `fuse` over the Triton runs: requests, executions
    # (mean batch), compute per frame, queue per request.
    triton_fuse: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def _fuse_statistics(triton) -> dict:
    client = triton.client()
    try:
        (model,) = client.get_inference_statistics("fuse", as_json=True)["model_stats"]
        instances = instance_counts(client, ("fuse",))["fuse"]
    finally:
        client.close()
    s = model["inference_stats"]
    return {
        "instances": instances,
        "requests": int(s.get("success", {}).get("count", 0)),
        "executions": int(model.get("execution_count", 0)),
        "queue_ns": int(s.get("queue", {}).get("ns", 0)),
        "compute_ns": sum(int(s.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output")),
    }


def fuse_figures(before: dict, after: dict) -> dict:
    requests = after["requests"] - before["requests"]
    executions = after["executions"] - before["executions"]
    compute_ms = (after["compute_ns"] - before["compute_ns"]) / 1e6
    queue_ms = (after["queue_ns"] - before["queue_ns"]) / 1e6
    per_frame = compute_ms / requests if requests else 0.0
    return {
        "instances": after["instances"], "frames": requests, "executions": executions,
        "mean_batch": round(requests / executions, 2) if executions else 0.0,
        "compute_ms_per_frame": round(per_frame, 2),
        "queue_ms_per_frame": round(queue_ms / requests, 2) if requests else 0.0,
    }


class LocalFrameFuser:
    """The baseline's fuse_frame: the fuse ONNX in-process, one session per core."""

    def __init__(self, user_faces, user_meshes, options: VideoOptions, sessions: list):
        self.user_faces, self.user_meshes, self.options = user_faces, user_meshes, options
        self.free = list(sessions)
        self.lock = threading.Lock()
        self.slots = asyncio.Semaphore(len(sessions))

    def _run(self, template_face, template_mesh):
        with self.lock:
            session = self.free.pop()
        try:
            faces, masks = session.run(None, {
                "user_faces": self.user_faces[None], "user_meshes": self.user_meshes[None],
                "template_faces": template_face[None, None], "template_meshes": template_mesh[None, None],
                "fuse_degree": np.array([[self.options.fuse_degree]], np.float32),
                "profile_degree": np.array([[self.options.profile_degree]], np.float32),
            })
        finally:
            with self.lock:
                self.free.append(session)
        return faces[0, 0], masks[0, 0]

    async def __call__(self, template_face, template_mesh):
        async with self.slots:
            return await asyncio.to_thread(self._run, template_face, template_mesh)


def _run_record(path: str, frames: int, seconds: float, times: StageTimes) -> VideoRun:
    return VideoRun(path, frames, round(seconds, 3), round(frames / seconds, 2),
                    {k: round(v, 3) for k, v in times.seconds.items()})


async def _triton_run(triton, template, photo: bytes, options: VideoOptions, settings: VideoSettings, out: Path):
    pool = TritonPool([triton.grpc_url], hedge_delay_s=3600.0, max_inflight_per_replica=1024,
                      gateway_key=triton.gateway_key)
    try:
        started = time.perf_counter()
        times = StageTimes()
        analysed = await pool.infer("face_analyze", analyze_inputs(photo), ANALYZE_OUTPUTS, time.monotonic() + 60)
        times.add("face_analyze", started)
        fuser = TritonFrameFuser(pool, analysed.as_numpy("user_faces")[0], analysed.as_numpy("user_meshes")[0],
                                 options, settings, [0])
        frames = await fuse_video(template, fuser, out, options, settings.max_video_kbps, times=times)
        return _run_record("triton", frames, time.perf_counter() - started, times)
    finally:
        await pool.close()


async def _baseline_run(pipeline, sessions, template, photo: bytes, options: VideoOptions, settings, out: Path):
    started = time.perf_counter()
    times = StageTimes()
    user = await asyncio.to_thread(pipeline.analyze_user, photo)
    times.add("face_analyze", started)
    fuser = LocalFrameFuser(user.faces, user.meshes, options, sessions)
    frames = await fuse_video(template, fuser, out, options, settings.max_video_kbps, times=times)
    return _run_record("baseline", frames, time.perf_counter() - started, times)


def run_video_bench(template_id: str, out_dir: Path, rounds: int = 2, echo=print) -> VideoBenchReport:
    from facefuse.local_pipeline import LocalPipeline
    from facefuse.onnxrt import onnx_session
    from facefuse.server.triton import embedded_triton

    settings = get_settings()
    video_settings = get_video_settings()
    template = VideoTemplateStore(video_settings.template_dir).load(template_id)
    photo = samples.astronaut()
    options = VideoOptions()
    cores = os.cpu_count() or 1
    report = VideoBenchReport(
        machine={"cpu_count": cores, "processor": platform.processor() or platform.machine(),
                 "python": platform.python_version()},
        template={k: template.info[k] for k in ("template_id", "version", "width", "height", "fps", "frame_count",
                                                "usable_frames", "duration_s")},
    )
    pipeline = LocalPipeline(settings)
    # The version Triton serves (a rebuilt fuse is a new version; version 1 may be gone).
    fuse_path = serving_model_path(settings.model_repository_dir, "fuse")
    sessions = [onnx_session(fuse_path, 1) for _ in range(cores)]
    with embedded_triton(settings) as triton, tempfile.TemporaryDirectory(prefix="facefuse-bench-") as scratch:
        out = Path(scratch) / "fused.mp4"
        asyncio.run(_triton_run(triton, template, photo, options, video_settings, out))  # warm-up
        order = []
        for number in range(rounds):
            order += ["triton", "baseline"] if number % 2 == 0 else ["baseline", "triton"]
        fuse_totals = None
        for path in order:
            cpu_before = {**_server_cpu_ms(triton.process.pid), "client": time.process_time() * 1000}
            if path == "triton":
                before = _fuse_statistics(triton)
                run = asyncio.run(_triton_run(triton, template, photo, options, video_settings, out))
                after = _fuse_statistics(triton)
                fuse_totals = _add(fuse_totals, before, after)
            else:
                run = asyncio.run(_baseline_run(pipeline, sessions, template, photo, options, video_settings, out))
            cpu_after = {**_server_cpu_ms(triton.process.pid), "client": time.process_time() * 1000}
            spent = {k: (v - cpu_before.get(k, 0.0)) / run.frames for k, v in cpu_after.items()}
            if path == "baseline":  # the idle server's own few ms are not the baseline's
                spent = {"client": spent["client"]}
            run.cpu_ms_per_frame = {k: round(v, 2) for k, v in spent.items() if v >= 0.05}
            run.cpu_ms_per_frame["total"] = round(sum(spent.values()), 2)
            report.runs.append(run)
            echo(f"{run.path:8s} {run.frames} frames in {run.seconds:6.2f} s = {run.frames_per_s:6.2f} frames/s  "
                 f"stages {json.dumps(run.stage_s)}")
        size = out.stat().st_size
    report.triton_fuse = fuse_figures({k: 0 for k in fuse_totals}, fuse_totals)
    report.summary = summarize(report.runs, template.info, size)
    # The per-frame bound: every core busy with this path's CPU work per frame and nothing
    # else (what the machine would do without the other load on it).
    cpu_ms = report.summary.get("triton_cpu_ms_per_frame")
    if cpu_ms:
        bound = cores * 1000 / cpu_ms
        report.summary["triton_cpu_bound_frames_per_s"] = round(bound, 2)
        report.summary["triton_cpu_bound_s_per_15s_25fps_clip"] = round(CLIP_SECONDS * 25 / bound, 1)
    echo(f"summary: {json.dumps(report.summary)}")
    write_report(report, out_dir)
    return report


def _add(totals: dict | None, before: dict, after: dict) -> dict:
    """Statistics' growth over one run added to totals (instances carried as they are)."""
    totals = dict(totals or {k: 0 for k in after})
    for key, value in after.items():
        totals[key] = value if key == "instances" else totals[key] + value - before[key]
    return totals


def summarize(runs: list[VideoRun], info: dict, last_output_bytes: int) -> dict:
    def total(path: str) -> tuple[int, float]:
        chosen = [r for r in runs if r.path == path]
        return sum(r.frames for r in chosen), sum(r.seconds for r in chosen)

    summary = {}
    for path in ("triton", "baseline"):
        frames, seconds = total(path)
        fps = frames / seconds if seconds else 0.0
        summary[f"{path}_frames_per_s"] = round(fps, 2)
        # A 15 s clip at the template's frame rate, every frame fused.
        summary[f"{path}_s_per_15s_clip"] = round(CLIP_SECONDS * info["fps"] / fps, 1) if fps else None
        chosen = [r for r in runs if r.path == path and r.cpu_ms_per_frame]
        if chosen:
            summary[f"{path}_cpu_ms_per_frame"] = round(
                sum(r.cpu_ms_per_frame["total"] * r.frames for r in chosen) / sum(r.frames for r in chosen), 2)
        stages: dict[str, float] = {}
        for run in (r for r in runs if r.path == path):
            for stage, value in run.stage_s.items():
                stages[stage] = stages.get(stage, 0.0) + value
        summary[f"{path}_stage_ms_per_frame"] = {k: round(1000 * v / frames, 2) for k, v in stages.items()} if frames else {}
    if summary["baseline_frames_per_s"]:
        summary["triton_vs_baseline_frames_per_s"] = round(
            summary["triton_frames_per_s"] / summary["baseline_frames_per_s"], 3)
    if summary.get("triton_cpu_ms_per_frame"):
        summary["baseline_vs_triton_cpu_per_frame"] = round(
            summary["baseline_cpu_ms_per_frame"] / summary["triton_cpu_ms_per_frame"], 3)
    summary["output_bytes"] = last_output_bytes
    summary["output_kbit_per_s"] = round(8 * last_output_bytes / 1000 / info["duration_s"], 1)
    return summary


def write_report(report: VideoBenchReport, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "video-bench.json", out_dir / "video-bench.md"
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    s = report.summary
    lines = [
        "# facefuse video benchmark", "",
        f"Machine: {json.dumps(report.machine)}", f"Template: {json.dumps(report.template)}", "",
        "| path | frames/s | s per 15 s clip | ms per frame by stage (wall, overlapping) |", "|---|---|---|---|",
        *[f"| {p} | {s[f'{p}_frames_per_s']} | {s[f'{p}_s_per_15s_clip']} | {json.dumps(s[f'{p}_stage_ms_per_frame'])} |"
          for p in ("triton", "baseline")],
        "", f"Triton vs baseline (frames/s): {s.get('triton_vs_baseline_frames_per_s')}",
        f"CPU ms per frame: Triton {s.get('triton_cpu_ms_per_frame')} (all processes), baseline "
        f"{s.get('baseline_cpu_ms_per_frame')}; baseline/Triton {s.get('baseline_vs_triton_cpu_per_frame')}",
        f"Triton's fuse (statistics API): {json.dumps(report.triton_fuse)}",
        f"Per-frame bound (all {report.machine['cpu_count']} cores on Triton's CPU ms per frame): "
        f"{s.get('triton_cpu_bound_frames_per_s')} frames/s, {s.get('triton_cpu_bound_s_per_15s_25fps_clip')} s "
        "per 15 s 25 fps clip",
        f"Output: {s['output_bytes']} bytes, {s['output_kbit_per_s']} kbit/s", "",
        "Runs: " + ", ".join(f"{r.path} {r.frames_per_s}" for r in report.runs),
        "CPU ms per frame by process: " + "; ".join(f"{r.path} {json.dumps(r.cpu_ms_per_frame)}" for r in report.runs),
    ]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
