"""facefuse.v1.VideoJobs: submit, poll, cancel and read fused-video jobs.

The service checks what is cheap (photo bytes, template id, options), stores the job
and answers with its id; the work happens in a VideoWorker (facefuse.jobs.worker), in
this process or another one sharing the store. Auth, quotas, the release and the
mapping of errors to statuses are the gateway's call guard's, which the gateway hands
in (facefuse.gateway.server.video_jobs), as FaceFusion uses it: one place for each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Awaitable, Callable, Protocol, TypeVar

from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

from facefuse.errors import TemplateError
from facefuse.jobs.result_objects import ResultObjects
from facefuse.jobs.store import Job, JobState, JobStore
from facefuse.jobs.worker import VideoWorker
from facefuse.scopes import SCOPE_FUSE, SCOPE_TEMPLATES
from facefuse.templates import check_template_id
from facefuse.video.fusion import VideoOptions
from facefuse.video.settings import VideoSettings
from facefuse.video.templates import VideoTemplateStore
from facefuse.vision.codec import check_photo

T = TypeVar("T")


class Guard(Protocol):
    """The gateway's call guard (facefuse.gateway.guard.CallGuard): authenticates and
    admits the caller for `scope`, runs work(call) and turns failures into statuses.
    `call.call.principal.tenant` is the caller's tenant."""

    async def __call__(self, context, scope: str, method: str, request_id: str,
                       work: Callable[[Any], Awaitable[T]]) -> T: ...

STATES = {
    JobState.QUEUED: pb.VIDEO_JOB_QUEUED, JobState.RUNNING: pb.VIDEO_JOB_RUNNING, JobState.DONE: pb.VIDEO_JOB_DONE,
    JobState.FAILED: pb.VIDEO_JOB_FAILED, JobState.CANCELLED: pb.VIDEO_JOB_CANCELLED,
    JobState.EXPIRED: pb.VIDEO_JOB_EXPIRED,
}
RESULT_CHUNK_BYTES = 1024 * 1024


def video_options_from(message: pb.VideoOptions) -> VideoOptions:
    defaults = VideoOptions()
    return VideoOptions(
        fuse_degree=message.fuse_degree if message.HasField("fuse_degree") else defaults.fuse_degree,
        profile_degree=message.profile_degree if message.HasField("profile_degree") else defaults.profile_degree,
        add_label=message.add_label if message.HasField("add_label") else defaults.add_label,
    ).validated()


def job_message(job: Job, results: ResultObjects | None = None) -> pb.VideoJob:
    """results: where the object store is configured, a done job carries a presigned URL."""
    message = pb.VideoJob(
        job_id=job.job_id, state=STATES[job.state], template_id=job.template_id, progress=job.progress,
        frames_done=job.frames_done, frame_count=job.frame_count, failure_reason=job.failure_reason,
        failure_detail=job.failure_detail, created_unix_s=job.created_s,
    )
    if job.queue_position is not None:
        message.queue_position = job.queue_position
    if job.eta_s is not None:
        message.eta_s = job.eta_s
    if job.expires_s is not None:
        message.expires_unix_s = job.expires_s
    if results is not None and job.state is JobState.DONE and job.expires_s is not None:
        signed = results.url(job.job_id, job.expires_s)
        if signed is not None:
            message.result_url, message.result_url_expires_unix_s = signed
    return message


class VideoJobsService(pb_grpc.VideoJobsServicer):
    def __init__(self, guard: Guard, store: JobStore, templates: VideoTemplateStore, settings: VideoSettings,
                 max_image_bytes: int, results: ResultObjects | None = None):
        """max_image_bytes: the photo limit, the gateway's as for its photo calls."""
        self.guard, self.store, self.templates, self.settings = guard, store, templates, settings
        self.max_image_bytes, self.results = max_image_bytes, results
        self.worker: VideoWorker | None = None

    async def SubmitVideoJob(self, request: pb.SubmitVideoJobRequest, context) -> pb.VideoJob:
        async def work(call) -> pb.VideoJob:
            options = video_options_from(request.options)
            check_template_id(request.template_id)
            try:
                info = self.templates.info(request.template_id)
            except OSError:
                raise TemplateError(f"video template {request.template_id!r} is not registered") from None
            check_photo(request.photo, self.max_image_bytes)
            # SQLite commits with an fsync: off the event loop, which photo calls share.
            job = await asyncio.to_thread(
                self.store.submit, call.principal.tenant, request.template_id, json.dumps(dataclasses.asdict(options)),
                request.photo, int(info["frame_count"]), self.settings.max_queued_jobs_per_tenant,
            )
            return job_message(job)

        return await self.guard(context, SCOPE_FUSE, "SubmitVideoJob", "-", work)

    async def GetVideoJob(self, request: pb.GetVideoJobRequest, context) -> pb.VideoJob:
        async def work(call) -> pb.VideoJob:
            job = await asyncio.to_thread(self.store.get, request.job_id, call.principal.tenant)
            return job_message(job, self.results)

        return await self.guard(context, SCOPE_FUSE, "GetVideoJob", request.job_id, work)

    async def CancelVideoJob(self, request: pb.CancelVideoJobRequest, context) -> pb.VideoJob:
        async def work(call) -> pb.VideoJob:
            return job_message(await asyncio.to_thread(self.store.cancel, request.job_id, call.principal.tenant))

        return await self.guard(context, SCOPE_FUSE, "CancelVideoJob", request.job_id, work)

    async def ReadVideoResult(self, request: pb.ReadVideoResultRequest, context):
        async def work(call) -> bytes:
            return await asyncio.to_thread(self.store.result, request.job_id, call.principal.tenant)

        video = await self.guard(context, SCOPE_FUSE, "ReadVideoResult", request.job_id, work)
        for start in range(0, len(video), RESULT_CHUNK_BYTES):
            yield pb.VideoChunk(data=video[start:start + RESULT_CHUNK_BYTES])

    async def ListVideoTemplates(self, request: pb.ListVideoTemplatesRequest, context) -> pb.ListVideoTemplatesResponse:
        async def work(call) -> pb.ListVideoTemplatesResponse:
            infos = [self.templates.info(t) for t in self.templates.ids()]
            return pb.ListVideoTemplatesResponse(templates=[
                pb.VideoTemplateInfo(template_id=i["template_id"], version=i["version"], width=i["width"],
                                     height=i["height"], fps=i["fps"], frame_count=i["frame_count"],
                                     duration_s=i["duration_s"])
                for i in infos
            ])

        return await self.guard(context, SCOPE_TEMPLATES, "ListVideoTemplates", "-", work)
