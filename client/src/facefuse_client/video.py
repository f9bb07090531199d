"""Fused videos as jobs: `client.videos` on FacefuseClient and AsyncFacefuseClient.

submit() answers at once with a job; get() polls it; wait() polls until it ends;
download() streams the finished MP4; fuse_video() does all of it. Submissions are not
retried automatically: a retried submit could start the same video twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc

from facefuse_client.errors import FacefuseError, error_from_rpc
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

STATES = {
    pb.VIDEO_JOB_QUEUED: "queued", pb.VIDEO_JOB_RUNNING: "running", pb.VIDEO_JOB_DONE: "done",
    pb.VIDEO_JOB_FAILED: "failed", pb.VIDEO_JOB_CANCELLED: "cancelled", pb.VIDEO_JOB_EXPIRED: "expired",
}
FINISHED = ("done", "failed", "cancelled", "expired")
DEFAULT_POLL_S = 1.0
DEFAULT_WAIT_S = 1800.0


class VideoJobFailed(Exception):
    """The job ended without a result: `job.state` and `job.failure_reason` say why."""

    def __init__(self, job: "VideoJob"):
        self.job = job
        super().__init__(f"video job {job.job_id} {job.state}: {job.failure_reason} {job.failure_detail}".strip())


@dataclass(frozen=True)
class VideoJob:
    job_id: str
    state: str  # queued, running, done, failed, cancelled, expired
    template_id: str
    queue_position: int | None
    progress: float  # 0..1
    frames_done: int
    frame_count: int
    eta_s: float | None
    failure_reason: str
    failure_detail: str
    expires_unix_s: float | None
    # Where the gateway keeps results in object storage: a presigned URL of the MP4 ("" if not).
    result_url: str = ""
    result_url_expires_unix_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True)
class VideoTemplate:
    template_id: str
    version: int
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float


def _job(m: pb.VideoJob) -> VideoJob:
    return VideoJob(
        m.job_id, STATES.get(m.state, "unknown"), m.template_id,
        m.queue_position if m.HasField("queue_position") else None, m.progress, m.frames_done, m.frame_count,
        m.eta_s if m.HasField("eta_s") else None, m.failure_reason, m.failure_detail,
        m.expires_unix_s if m.HasField("expires_unix_s") else None, m.result_url,
        m.result_url_expires_unix_s if m.HasField("result_url_expires_unix_s") else None,
    )


def _submit_request(photo: bytes, template_id: str, fuse_degree, profile_degree, add_label) -> pb.SubmitVideoJobRequest:
    options = pb.VideoOptions()
    if fuse_degree is not None:
        options.fuse_degree = fuse_degree
    if profile_degree is not None:
        options.profile_degree = profile_degree
    if add_label is not None:
        options.add_label = add_label
    return pb.SubmitVideoJobRequest(photo=photo, template_id=template_id, options=options)


def _template(t: pb.VideoTemplateInfo) -> VideoTemplate:
    return VideoTemplate(t.template_id, t.version, t.width, t.height, t.fps, t.frame_count, t.duration_s)


class VideoJobs:
    """Blocking video-job calls over a FacefuseClient's channel."""

    def __init__(self, channel: grpc.Channel, metadata, timeout_s: float):
        self._stub = pb_grpc.VideoJobsStub(channel)
        self._metadata, self.timeout_s = metadata, timeout_s

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def submit(self, photo: bytes, template_id: str, *, fuse_degree=None, profile_degree=None, add_label=None) -> VideoJob:
        request = _submit_request(photo, template_id, fuse_degree, profile_degree, add_label)
        return _job(self._call(self._stub.SubmitVideoJob, request))

    def get(self, job_id: str) -> VideoJob:
        return _job(self._call(self._stub.GetVideoJob, pb.GetVideoJobRequest(job_id=job_id)))

    def cancel(self, job_id: str) -> VideoJob:
        return _job(self._call(self._stub.CancelVideoJob, pb.CancelVideoJobRequest(job_id=job_id)))

    def download(self, job_id: str) -> bytes:
        try:
            chunks = self._stub.ReadVideoResult(pb.ReadVideoResultRequest(job_id=job_id), timeout=self.timeout_s,
                                                metadata=self._metadata)
            return b"".join(c.data for c in chunks)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def list_templates(self) -> list[VideoTemplate]:
        return [_template(t) for t in self._call(self._stub.ListVideoTemplates, pb.ListVideoTemplatesRequest()).templates]

    def wait(self, job_id: str, *, poll_s: float = DEFAULT_POLL_S, timeout_s: float = DEFAULT_WAIT_S,
             on_progress: Callable[[VideoJob], None] | None = None) -> VideoJob:
        """Poll until the job ends; on_progress sees every poll."""
        until = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.finished or time.monotonic() > until:
                return job
            time.sleep(poll_s)

    def fuse_video(self, photo: bytes, template_id: str, *, on_progress=None, poll_s: float = DEFAULT_POLL_S,
                   timeout_s: float = DEFAULT_WAIT_S, **options) -> bytes:
        """Submit, wait, download: the fused MP4's bytes. VideoJobFailed if it ends otherwise."""
        job = self.wait(self.submit(photo, template_id, **options).job_id, poll_s=poll_s, timeout_s=timeout_s,
                        on_progress=on_progress)
        if job.state != "done":
            raise VideoJobFailed(job)
        return self.download(job.job_id)


class AsyncVideoJobs:
    """asyncio video-job calls over an AsyncFacefuseClient's channel."""

    def __init__(self, channel, metadata, timeout_s: float):
        self._stub = pb_grpc.VideoJobsStub(channel)
        self._metadata, self.timeout_s = metadata, timeout_s

    async def _call(self, method, request):
        try:
            return await method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    async def submit(self, photo: bytes, template_id: str, *, fuse_degree=None, profile_degree=None,
                     add_label=None) -> VideoJob:
        request = _submit_request(photo, template_id, fuse_degree, profile_degree, add_label)
        return _job(await self._call(self._stub.SubmitVideoJob, request))

    async def get(self, job_id: str) -> VideoJob:
        return _job(await self._call(self._stub.GetVideoJob, pb.GetVideoJobRequest(job_id=job_id)))

    async def cancel(self, job_id: str) -> VideoJob:
        return _job(await self._call(self._stub.CancelVideoJob, pb.CancelVideoJobRequest(job_id=job_id)))

    async def download(self, job_id: str) -> bytes:
        try:
            call = self._stub.ReadVideoResult(pb.ReadVideoResultRequest(job_id=job_id), timeout=self.timeout_s,
                                              metadata=self._metadata)
            return b"".join([c.data async for c in call])
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    async def list_templates(self) -> list[VideoTemplate]:
        reply = await self._call(self._stub.ListVideoTemplates, pb.ListVideoTemplatesRequest())
        return [_template(t) for t in reply.templates]

    async def wait(self, job_id: str, *, poll_s: float = DEFAULT_POLL_S, timeout_s: float = DEFAULT_WAIT_S,
                   on_progress: Callable[[VideoJob], Awaitable[None] | None] | None = None) -> VideoJob:
        until = time.monotonic() + timeout_s
        while True:
            job = await self.get(job_id)
            if on_progress is not None:
                maybe = on_progress(job)
                if asyncio.iscoroutine(maybe):
                    await maybe
            if job.finished or time.monotonic() > until:
                return job
            await asyncio.sleep(poll_s)

    async def fuse_video(self, photo: bytes, template_id: str, *, on_progress=None, poll_s: float = DEFAULT_POLL_S,
                         timeout_s: float = DEFAULT_WAIT_S, **options) -> bytes:
        job = await self.wait((await self.submit(photo, template_id, **options)).job_id, poll_s=poll_s,
                              timeout_s=timeout_s, on_progress=on_progress)
        if job.state != "done":
            raise VideoJobFailed(job)
        return await self.download(job.job_id)


__all__ = ["AsyncVideoJobs", "FacefuseError", "VideoJob", "VideoJobFailed", "VideoJobs", "VideoTemplate"]
