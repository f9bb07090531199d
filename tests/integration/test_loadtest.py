"""Low-load, bounded Locust runs end to end: a distributed one (a master and two local
workers), and one with a share of video users whose jobs the gateway's worker fuses."""

from __future__ import annotations

import csv
import json

import av
import pytest

from facefuse.capacity.loadtest import LoadTestPlan, run_load_test
from facefuse.capacity.mix import PHOTO_NAMES, VIDEO_JOB, VIDEO_NAMES, VIDEO_RUNNING, VIDEO_SUBMIT
from facefuse.capacity.planner import measurement_from_file
from facefuse.capacity.video_plan import campaign_plan, video_measurement_from_file
from facefuse.gateway.dev_key import ensure_dev_key
from facefuse.gateway.server import GatewayThread
from facefuse.gateway.settings import GatewaySettings
from facefuse.local_pipeline import LocalPipeline
from facefuse.video import media, samples
from facefuse.video.analysis import register_video
from facefuse.video.settings import VideoSettings
from facefuse.video.templates import VideoTemplateStore

pytestmark = pytest.mark.slow


def test_a_short_distributed_run_writes_a_capacity_report(triton, tmp_path):
    settings = GatewaySettings(triton_urls=[triton.grpc_url], keys_file=tmp_path / "keys.json")
    key = ensure_dev_key(settings)
    plan = LoadTestPlan(shape="steady", max_users=2, duration_s=12, workers=2, p99_ms=5000)
    with GatewayThread(settings, port=0) as gateway:
        result = run_load_test(plan, tmp_path / "report", "pytest smoke run",
                               (f"127.0.0.1:{gateway.port}", triton.metrics_url, key, triton.grpc_url),
                               device="smoke-test stack", gpus_per_replica=0, echo=lambda *_: None)

    out = tmp_path / "report"
    for name in ("report.md", "capacity.json", "throughput_vs_users.png", "latency_over_time.png", "stage_times.png"):
        assert (out / name).is_file(), name
    rows = {r["Name"]: r for r in csv.DictReader(open(out / "locust_stats.csv"))}
    assert int(rows["Fuse"]["Request Count"]) > 0
    # Bad photos came back with their typed reasons: not failures.
    assert all(int(r["Failure Count"]) == 0 for r in rows.values()), rows
    capacity = json.loads((out / "capacity.json").read_text())["capacity"]
    assert capacity["sustainable_posters_per_s"] > 0
    assert capacity["device"] == "smoke-test stack" and capacity["gpus_per_replica"] == 0
    assert result["bottleneck_stage"] in capacity["stage_compute_ms_per_poster"]


def _short_clip(path, frames: int) -> None:
    """The first frames of the sample talking-head clip: a job that finishes within a short run."""
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=24)
        for number, rgb in enumerate(media.read_frames(samples.sample_clip(), max_frames=frames)):
            if number == 0:
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "yuv420p"
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = number
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def test_video_users_jobs_finish_and_are_reported_apart_from_the_photo_calls(triton, settings, tmp_path):
    clip = tmp_path / "short.mp4"
    _short_clip(clip, frames=12)
    video_settings = VideoSettings(template_dir=tmp_path / "video-templates", jobs_dir=tmp_path / "jobs", poll_s=0.05)
    register_video(LocalPipeline(settings), VideoTemplateStore(video_settings.template_dir), "short-head", clip,
                   settings=video_settings)
    gateway_settings = GatewaySettings(triton_urls=[triton.grpc_url], keys_file=tmp_path / "keys.json")
    key = ensure_dev_key(gateway_settings)
    # Three users, a third of them video: two photo users and one submitting jobs one after another.
    plan = LoadTestPlan(shape="steady", max_users=3, duration_s=30, p99_ms=10000, video_share=0.34,
                        video_template="short-head")
    with GatewayThread(gateway_settings, port=0, video_settings=video_settings) as gateway:
        result = run_load_test(plan, tmp_path / "report", "pytest video smoke run",
                               (f"127.0.0.1:{gateway.port}", triton.metrics_url, key, triton.grpc_url),
                               device="smoke-test stack", gpus_per_replica=0, echo=lambda *_: None)

    out = tmp_path / "report"
    rows = {r["Name"]: r for r in csv.DictReader(open(out / "locust_stats.csv"))}
    assert int(rows["Fuse"]["Request Count"]) > 0 and int(rows[VIDEO_SUBMIT]["Request Count"]) > 0
    assert int(rows[VIDEO_JOB]["Request Count"]) >= 1, rows.keys()
    assert all(int(r["Failure Count"]) == 0 for r in rows.values()), rows
    assert float(rows[VIDEO_RUNNING]["Average Content Size"]) == 12  # the template's frames per job

    video = result["video"]
    assert video["jobs_done"] >= 1 and video["jobs_failed"] == 0 and video["frames_per_s"] > 0
    assert video["template_id"] == "short-head" and video["template_fps"] == pytest.approx(24, abs=0.5)
    assert "Video jobs beside the photo load" in (out / "report.md").read_text()
    # The photo steps' latency is the photo rows' own: no step reports a video job's latency.
    history = list(csv.DictReader(open(out / "locust_stats_history.csv")))
    photo_p99 = max(float(r["99%"]) for r in history if r["Name"] in PHOTO_NAMES)
    assert all(step["p99_ms"] <= photo_p99 for step in result["steps"])
    assert {r["Name"] for r in history} >= {"Fuse", *VIDEO_NAMES}

    # The planner takes both measured rates from this one report.
    report = out / "capacity.json"
    videos = video_measurement_from_file(report)
    assert videos.beside_photo_load and videos.frames_per_s == video["frames_per_s"]
    posters = measurement_from_file(report, 10000)
    plan_ = campaign_plan(100, 3600.0, 5, 1, posters, videos)
    assert plan_.replicas >= 1 and plan_.video_frames == 100 * 15 * videos.template_fps
