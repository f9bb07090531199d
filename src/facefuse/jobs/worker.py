"""The video worker: takes jobs from the store and runs them on Triton.

Per job: the photo goes through `face_analyze` once (the photo's own refusals, e.g.
NO_FACE_DETECTED, fail the job with that reason); each usable template frame goes to
Triton's `fuse` model as its own request, several in flight, so Triton's dynamic
batcher forms batches across frames (and across jobs); the frames are pasted, labelled
and encoded here (see facefuse.video.fusion).

Photos come first: each frame is sent with Triton's low priority level
(VIDEO_FRAME_PRIORITY), so `fuse` serves queued photo requests before queued frames; a
job keeps at most `frames_in_flight` fuse calls in Triton's queues, and before sending
more it waits (up to `photo_priority_max_wait_s`) while photo calls are in flight, so
a poster request waits behind the frames already executing at most, never behind a
whole video.

The event loop is shared with the gateway's photo calls: whatever blocks (template
loads, store writes, reading the finished MP4) runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput

from facefuse.contract import VIDEO_FRAME_PRIORITY
from facefuse.errors import FacefuseError, Reason
from facefuse.jobs.result_objects import ResultObjects
from facefuse.jobs.store import ClaimedJob, JobStore
from facefuse.triton_client import ANALYZE_OUTPUTS, analyze_inputs
from facefuse.video.fusion import StageTimes, VideoOptions, fuse_video
from facefuse.video.settings import VideoSettings
from facefuse.video.templates import VideoTemplateStore

log = logging.getLogger("facefuse.video")

FUSE_OUTPUTS = [InferRequestedOutput("fused_faces"), InferRequestedOutput("fused_masks")]
# One frame's fuse call: generous, as it may queue behind photo traffic.
FRAME_TIMEOUT_S = 60.0
ANALYZE_TIMEOUT_S = 30.0


class TritonCalls(Protocol):
    """What the worker needs of the gateway's Triton pool (facefuse.gateway.triton.TritonPool):
    its calls go through the same admission, dispatch queue and replicas as photo calls.
    A call refused because the replicas are full raises a FacefuseError whose reason is
    OVERLOADED, with `retry_after_s`."""

    def calls_in_flight(self) -> int: ...

    async def infer(self, model: str, inputs, outputs, deadline: float, *, priority: int = ...) -> Any: ...


class JobStopped(Exception):
    """The job was cancelled or taken over: stop without publishing anything."""


def _tensor(name: str, dtype: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), dtype)
    tensor.set_data_from_numpy(value)
    return tensor


def fuse_frame_inputs(user_faces, user_meshes, template_face, template_mesh, options: VideoOptions) -> list[InferInput]:
    """One frame for Triton's `fuse`: batch 1, one face."""
    return [
        _tensor("user_faces", "UINT8", np.ascontiguousarray(user_faces[None], np.uint8)),
        _tensor("user_meshes", "FP32", np.ascontiguousarray(user_meshes[None], np.float32)),
        _tensor("template_faces", "UINT8", np.ascontiguousarray(template_face[None, None], np.uint8)),
        _tensor("template_meshes", "FP32", np.ascontiguousarray(template_mesh[None, None], np.float32)),
        _tensor("fuse_degree", "FP32", np.array([[options.fuse_degree]], np.float32)),
        _tensor("profile_degree", "FP32", np.array([[options.profile_degree]], np.float32)),
    ]


class TritonFrameFuser:
    """fuse_frame for fusion.fuse_video, on Triton, with photo calls given way."""

    def __init__(self, triton: TritonCalls, user_faces, user_meshes, options: VideoOptions, settings: VideoSettings,
                 in_flight: list[int]):
        self.triton, self.options, self.settings = triton, options, settings
        self.user_faces, self.user_meshes = user_faces, user_meshes
        self.slots = asyncio.Semaphore(settings.frames_in_flight)
        self.video_in_flight = in_flight  # shared by the worker's jobs: [count]

    def photo_calls_in_flight(self) -> int:
        return self.triton.calls_in_flight() - self.video_in_flight[0]

    async def _give_way_to_photos(self) -> None:
        until = time.monotonic() + self.settings.photo_priority_max_wait_s
        while self.photo_calls_in_flight() > 0 and time.monotonic() < until:
            await asyncio.sleep(0.01)

    async def __call__(self, template_face: np.ndarray, template_mesh: np.ndarray):
        async with self.slots:
            await self._give_way_to_photos()
            inputs = fuse_frame_inputs(self.user_faces, self.user_meshes, template_face, template_mesh, self.options)
            deadline = time.monotonic() + FRAME_TIMEOUT_S
            while True:
                self.video_in_flight[0] += 1
                try:
                    result = await self.triton.infer("fuse", inputs, FUSE_OUTPUTS, deadline, priority=VIDEO_FRAME_PRIORITY)
                    break
                except FacefuseError as shed:
                    if shed.reason is not Reason.OVERLOADED:
                        raise
                    # Photo traffic fills the replicas: a background frame waits its turn
                    # rather than failing the whole job (the frame's deadline still holds).
                    wait_s = getattr(shed, "retry_after_s", None) or 1.0
                    if time.monotonic() + wait_s > deadline:
                        raise
                finally:
                    self.video_in_flight[0] -= 1
                await asyncio.sleep(wait_s)
        return result.as_numpy("fused_faces")[0, 0], result.as_numpy("fused_masks")[0, 0]


class VideoWorker:
    def __init__(self, store: JobStore, triton: TritonCalls, templates: VideoTemplateStore, settings: VideoSettings,
                 name: str | None = None, results: ResultObjects | None = None):
        """results: the object store finished videos are uploaded to, where one is configured."""
        self.store, self.triton, self.templates, self.settings = store, triton, templates, settings
        self.results, self._last_sweep = results, 0.0
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._video_in_flight = [0]
        self.last_times: StageTimes | None = None

    async def run(self) -> None:
        """Take and run jobs until cancelled, `worker_concurrency` at a time."""
        running: set[asyncio.Task] = set()
        try:
            while True:
                claimed = None
                if len(running) < self.settings.worker_concurrency:
                    claimed = await asyncio.to_thread(self.store.claim, self.name)
                if claimed is None:
                    if running:
                        await asyncio.wait(running, timeout=self.settings.poll_s, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(self.settings.poll_s)
                    await asyncio.to_thread(self.store.expire)
                    await self._sweep_objects()
                    continue
                task = asyncio.ensure_future(self.run_job(claimed))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _sweep_objects(self) -> None:
        if self.results is None or time.monotonic() - self._last_sweep < self.settings.s3_sweep_s:
            return
        self._last_sweep = time.monotonic()
        try:
            await asyncio.to_thread(self.results.delete_expired)
        except Exception:  # noqa: BLE001 - the store is unreachable now: the next sweep tries again
            log.exception("deleting expired video results from object storage failed")

    async def run_job(self, claimed: ClaimedJob) -> None:
        job, attempt = claimed.job, claimed.attempt
        log.info("video job %s attempt %d started by %s", job.job_id, attempt, self.name)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="facefuse-video-") as scratch:
            out_path = Path(scratch) / "fused.mp4"
            try:
                options = VideoOptions(**json.loads(job.options)).validated()
                template = await asyncio.to_thread(self.templates.load, job.template_id)
                analysed = await self.triton.infer("face_analyze", analyze_inputs(claimed.photo), ANALYZE_OUTPUTS,
                                                   time.monotonic() + ANALYZE_TIMEOUT_S)
                del claimed  # the photo is not needed past this point
                fuser = TritonFrameFuser(self.triton, analysed.as_numpy("user_faces")[0],
                                         analysed.as_numpy("user_meshes")[0], options, self.settings,
                                         self._video_in_flight)

                async def progress(done: int, total: int) -> None:
                    if not await asyncio.to_thread(self.store.report, job.job_id, self.name, attempt, done, total):
                        raise JobStopped()

                times = StageTimes()
                frames = await fuse_video(template, fuser, out_path, options, self.settings.max_video_kbps,
                                          progress=progress, times=times)
                self.last_times = times
                video = await asyncio.to_thread(out_path.read_bytes)
                if self.results is not None:  # before the job reads done, so its URL works at once
                    await asyncio.to_thread(self.results.put, job.job_id, video)
                published = await asyncio.to_thread(self.store.finish, job.job_id, self.name, attempt, video, frames,
                                                    time.perf_counter() - started)
                log.info("video job %s %s: %d frames in %.1f s", job.job_id, "done" if published else "superseded",
                         frames, time.perf_counter() - started)
            except JobStopped:
                log.info("video job %s stopped (cancelled or taken over)", job.job_id)
            except FacefuseError as error:
                log.info("video job %s failed: %s", job.job_id, error.reason.value)
                await asyncio.to_thread(self.store.fail, job.job_id, self.name, attempt, error.reason.value,
                                        error.detail)
            except asyncio.CancelledError:
                # Shutting down: the job goes back to the queue for the next worker. On the loop,
                # not in a thread: the store is closed once this task ends, and a second cancel
                # would end it while a thread still wrote.
                self.store.release(job.job_id, self.name, attempt)
                raise
            except Exception:  # noqa: BLE001 - the job fails with INTERNAL; the log has the trace
                log.exception("video job %s failed", job.job_id)
                await asyncio.to_thread(self.store.fail, job.job_id, self.name, attempt, Reason.INTERNAL.value,
                                        "internal error")
