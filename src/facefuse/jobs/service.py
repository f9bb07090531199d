"""facefuse.v1.VideoJobs: submit, poll, cancel and read fused-video jobs.

The gateway checks what is cheap (auth, photo bytes, template id, options), stores the
job and answers with its id; the work happens in a VideoWorker (facefuse.gateway.
video_worker), in this process or another one on the same machine sharing the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

from facefuse.errors import TemplateError
from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, Principal
from facefuse.gateway.handlers import add_service
from facefuse.gateway.jobs import Job, JobState, JobStore, load_key
from facefuse.gateway.result_objects import ResultObjects, result_objects
from facefuse.gateway.service import FaceFusionService, check_photo
from facefuse.gateway.triton import TritonPool
from facefuse.gateway.video_worker import VideoWorker
from facefuse.templates import check_template_id
from facefuse.video.fusion import VideoOptions
from facefuse.video.settings import VideoSettings, get_video_settings
from facefuse.video.templates import VideoTemplateStore

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
    def __init__(self, photos: FaceFusionService, store: JobStore, templates: VideoTemplateStore,
                 settings: VideoSettings, results: ResultObjects | None = None):
        # Auth, quotas and error mapping are the photo service's: one place for each.
        self.photos, self.store, self.templates, self.settings = photos, store, templates, settings
        self.results = results
        self.worker: VideoWorker | None = None

    async def SubmitVideoJob(self, request: pb.SubmitVideoJobRequest, context) -> pb.VideoJob:
        async def work(principal: Principal, _request_id: str) -> pb.VideoJob:
            options = video_options_from(request.options)
            check_template_id(request.template_id)
            try:
                info = self.templates.info(request.template_id)
            except OSError:
                raise TemplateError(f"video template {request.template_id!r} is not registered") from None
            check_photo(request.photo, self.photos.settings.max_image_bytes)
            # SQLite commits with an fsync: off the event loop, which photo calls share.
            job = await asyncio.to_thread(
                self.store.submit, principal.tenant, request.template_id, json.dumps(dataclasses.asdict(options)),
                request.photo, int(info["frame_count"]), self.settings.max_queued_jobs_per_tenant,
            )
            return job_message(job)

        return await self.photos._guard(context, SCOPE_FUSE, "SubmitVideoJob", "-", work)

    async def GetVideoJob(self, request: pb.GetVideoJobRequest, context) -> pb.VideoJob:
        async def work(principal: Principal, _request_id: str) -> pb.VideoJob:
            return job_message(await asyncio.to_thread(self.store.get, request.job_id, principal.tenant), self.results)

        return await self.photos._guard(context, SCOPE_FUSE, "GetVideoJob", request.job_id, work)

    async def CancelVideoJob(self, request: pb.CancelVideoJobRequest, context) -> pb.VideoJob:
        async def work(principal: Principal, _request_id: str) -> pb.VideoJob:
            return job_message(await asyncio.to_thread(self.store.cancel, request.job_id, principal.tenant))

        return await self.photos._guard(context, SCOPE_FUSE, "CancelVideoJob", request.job_id, work)

    async def ReadVideoResult(self, request: pb.ReadVideoResultRequest, context):
        async def work(principal: Principal, _request_id: str) -> bytes:
            return await asyncio.to_thread(self.store.result, request.job_id, principal.tenant)

        video = await self.photos._guard(context, SCOPE_FUSE, "ReadVideoResult", request.job_id, work)
        for start in range(0, len(video), RESULT_CHUNK_BYTES):
            yield pb.VideoChunk(data=video[start:start + RESULT_CHUNK_BYTES])

    async def ListVideoTemplates(self, request: pb.ListVideoTemplatesRequest, context) -> pb.ListVideoTemplatesResponse:
        async def work(principal: Principal, _request_id: str) -> pb.ListVideoTemplatesResponse:
            infos = [self.templates.info(t) for t in self.templates.ids()]
            return pb.ListVideoTemplatesResponse(templates=[
                pb.VideoTemplateInfo(template_id=i["template_id"], version=i["version"], width=i["width"],
                                     height=i["height"], fps=i["fps"], frame_count=i["frame_count"],
                                     duration_s=i["duration_s"])
                for i in infos
            ])

        return await self.photos._guard(context, SCOPE_TEMPLATES, "ListVideoTemplates", "-", work)


def open_job_store(settings: VideoSettings) -> JobStore:
    """Redis Streams where settings.redis_url is set (many machines), else embedded SQLite."""
    if settings.redis_url and not settings.result_key_b64:
        raise ValueError("FACEFUSE_VIDEO_REDIS_URL needs FACEFUSE_VIDEO_RESULT_KEY_B64: every machine must hold "
                         "the same key to read the photos and results it shares")
    key = load_key(settings.result_key_b64.get_secret_value() if settings.result_key_b64 else None, settings.jobs_dir)
    if settings.redis_url:
        from facefuse.gateway.jobs_redis import RedisJobStore

        return RedisJobStore(settings.redis_url, key, settings.result_ttl_s, settings.lease_s)
    return JobStore(settings.jobs_dir, key, settings.result_ttl_s, settings.lease_s)


@contextlib.asynccontextmanager
async def video_jobs(server, photos: FaceFusionService, triton: TritonPool, settings: VideoSettings | None = None):
    """Adds VideoJobs to a gRPC server (before it starts) and runs a worker beside it
    when settings.worker_in_gateway; yields the service (its worker as `.worker`)."""
    settings = settings or get_video_settings()
    store = open_job_store(settings)
    templates = VideoTemplateStore(settings.template_dir)
    results = result_objects(settings)
    service = VideoJobsService(photos, store, templates, settings, results)
    add_service(service, server, "VideoJobs")  # malformed bodies: INVALID_ARGUMENT, not UNKNOWN
    service.worker = VideoWorker(store, triton, templates, settings, results=results) if settings.worker_in_gateway else None
    task = asyncio.ensure_future(service.worker.run()) if service.worker else None
    try:
        yield service
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        store.close()
