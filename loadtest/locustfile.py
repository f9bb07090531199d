"""Full-link load test: Locust users calling the facefuse gateway over gRPC.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:50051 --shape ramp --max-users 8

(`facefuse loadtest run` starts the servers, runs this, records Triton's metrics and
writes the capacity report.) gRPC is patched for gevent, and every call's timing reaches
Locust through a client interceptor firing `events.request`.

The mix: Fuse into one template (most calls; a third of them with beauty on the
poster), FuseMany into five templates, Beautify (a photo back with all four beauty
effects), and a few percent of bad photos that must come back with their typed reason; a correct refusal
counts as a success, anything else as a failure. With --video-share S (or
FACEFUSE_LOADTEST_VIDEO_SHARE), that share of the users are VideoUsers instead: each
submits a video job, polls it until done and downloads the MP4, reported under the
"Video ..." names of facefuse.capacity.mix, apart from the photo rows.

With --arrival-rate R the users are replaced by one OpenLoopUser: calls of the same mix
arrive at R per second on a schedule (facefuse.capacity.check.arrival_times), whether or
not earlier calls have answered, and each call's outcome goes to --open-loop-log
(`facefuse capacity check` runs it).
"""

from __future__ import annotations

import json
import os
import random
import time

import gevent
from gevent.pool import Group

from locust import LoadTestShape, User, between, events, task

import grpc  # isort: skip - after locust, which patches the standard library for gevent
import grpc.experimental.gevent as grpc_gevent  # isort: skip

grpc_gevent.init_gevent()

from facefuse_client.client import MAX_MESSAGE_BYTES  # noqa: E402
from facefuse_client.errors import REASON_KEY  # noqa: E402
from facefuse_client.v1 import facefuse_pb2 as pb  # noqa: E402
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc  # noqa: E402

from facefuse.capacity.check import arrival_times  # noqa: E402
from facefuse.capacity.mix import (  # noqa: E402
    BAD_PHOTO, BEAUTIFY, BEAUTY_VALUES, DEFAULT_VIDEO_TEMPLATE, FUSE, FUSE_BEAUTY_SHARE, FUSE_MANY, FUSE_MANY_TEMPLATES, SINGLE_FACE_TEMPLATES, VIDEO_DOWNLOAD,
    POSTERS_PER_REQUEST, VIDEO_JOB, VIDEO_POLL, VIDEO_RUNNING, VIDEO_SUBMIT, WEIGHTS,
)
from facefuse.capacity.photo_pool import bad_photos, good_photos  # noqa: E402
from facefuse.capacity.shapes import ShapeParams, users_at  # noqa: E402

NAME_KEY, EXPECT_KEY = "x-locust-name", "x-locust-expect"
TIMEOUT_S = 60.0
VIDEO_POLL_S = 0.5
# A job not done by then counts as failed (a 15 s clip on a loaded CPU replica is minutes).
VIDEO_JOB_TIMEOUT_S = 900.0


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--shape", default="ramp", help="ramp | steady | spike")
    parser.add_argument("--max-users", type=int, default=8)
    parser.add_argument("--step-s", type=float, default=10.0, help="ramp: seconds per user level")
    parser.add_argument("--duration-s", type=float, default=30.0, help="steady, spike: length of the run")
    parser.add_argument("--api-key", default=os.environ.get("FACEFUSE_API_KEY", ""), help="gateway API key")
    parser.add_argument("--video-share", type=float, default=float(os.environ.get("FACEFUSE_LOADTEST_VIDEO_SHARE", 0)),
                        help="share of the users (0..1) that submit video jobs instead of photo calls")
    parser.add_argument("--video-template", default=DEFAULT_VIDEO_TEMPLATE, help="video template the jobs use")
    parser.add_argument("--call-timeout-s", type=float, default=TIMEOUT_S, help="each photo call's deadline")
    parser.add_argument("--arrival-rate", type=float, default=0.0,
                        help="open loop: calls per second arriving on a schedule (0: closed-loop users)")
    parser.add_argument("--open-loop-s", type=float, default=60.0, help="open loop: seconds of arrivals")
    parser.add_argument("--open-loop-arrivals", default="poisson", help="open loop: poisson | uniform")
    parser.add_argument("--open-loop-seed", type=int, default=1)
    parser.add_argument("--open-loop-log", default="", help="open loop: a JSON line per call goes here")


# A good photo whose poster postprocess's check refuses ran the whole pipeline and got the
# product's answer: served, not failed (its share is the quality log's business).
SERVED_REFUSALS = {"FUSION_QUALITY_LOW"}


def failure(error, expected):
    """Why a call counts as failed (None: it did what was expected); error is None or a grpc.RpcError."""
    if error is None:
        return AssertionError(f"expected {expected}, the call succeeded") if expected else None
    reason = reason_of(error)
    if reason != expected and not (expected is None and reason in SERVED_REFUSALS):
        return error
    return None


def reason_of(error) -> str:
    return dict(error.trailing_metadata() or ()).get(REASON_KEY, error.code().name)


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Times each call and reports it to Locust; a call's Locust name and the reason it
    is expected to fail with ride in two metadata keys that are removed before sending."""

    def __init__(self, environment):
        self.environment = environment

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or ())
        local = {k: v for k, v in metadata if k in (NAME_KEY, EXPECT_KEY)}
        details = details._replace(metadata=[(k, v) for k, v in metadata if k not in local])
        name = local.get(NAME_KEY, details.method.rsplit("/", 1)[-1])
        expected = local.get(EXPECT_KEY)
        start = time.perf_counter()
        call = continuation(details, request)
        error = call.exception()
        elapsed_ms = (time.perf_counter() - start) * 1000
        length = call.result().ByteSize() if error is None else 0
        exception = failure(error, expected)
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=elapsed_ms, response_length=length,
            exception=exception, context={},
        )
        return call


class GatewayClient(User):
    """A gRPC channel to the gateway whose calls report to Locust."""

    abstract = True

    def on_start(self):
        self.photos, self.bad = POOL["good"], POOL["bad"]
        host = self.environment.host or "127.0.0.1:50051"
        channel = grpc.intercept_channel(
            grpc.insecure_channel(host, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]),
            LocustInterceptor(self.environment),
        )
        self.channel, self.stub = channel, pb_grpc.FaceFusionStub(channel)
        self.videos = pb_grpc.VideoJobsStub(channel)
        self.auth = (("x-api-key", self.environment.parsed_options.api_key),)

    def on_stop(self):
        self.channel.close()

    def _call(self, method, request, name, expect=None):
        """The response, or None when the call failed (the interceptor reported it)."""
        metadata = list(self.auth) + [(NAME_KEY, name)] + ([(EXPECT_KEY, expect)] if expect else [])
        try:
            return method(request, timeout=self.environment.parsed_options.call_timeout_s, metadata=metadata)
        except grpc.RpcError:
            return None

    def _report(self, name, elapsed_s, length=0, exception=None):
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=elapsed_s * 1000, response_length=length,
            exception=exception, context={},
        )


    def _photo_call(self, name):
        """(stub method, request, name, expected reason) of one call of the mix."""
        if name == FUSE:
            options = pb.FuseOptions(beauty=pb.BeautyOptions(**BEAUTY_VALUES)) if random.random() < FUSE_BEAUTY_SHARE \
                else pb.FuseOptions()
            request = pb.FuseRequest(photo=random.choice(self.photos).data,
                                     template_id=random.choice(SINGLE_FACE_TEMPLATES), options=options)
            return self.stub.Fuse, request, name, None
        if name == FUSE_MANY:
            request = pb.FuseManyRequest(photo=random.choice(self.photos).data, template_ids=list(FUSE_MANY_TEMPLATES))
            return self.stub.FuseMany, request, name, None
        if name == BEAUTIFY:
            request = pb.BeautifyRequest(photo=random.choice(self.photos).data, beauty=pb.BeautyOptions(**BEAUTY_VALUES))
            return self.stub.Beautify, request, name, None
        photo = random.choice(self.bad)
        request = pb.FuseRequest(photo=photo.data, template_id=random.choice(SINGLE_FACE_TEMPLATES))
        return self.stub.Fuse, request, BAD_PHOTO, photo.expected_reason


class GatewayUser(GatewayClient):
    wait_time = between(0.0, 0.2)

    @task(WEIGHTS[FUSE])
    def fuse(self):
        self._call(*self._photo_call(FUSE))

    @task(WEIGHTS[FUSE_MANY])
    def fuse_many(self):
        self._call(*self._photo_call(FUSE_MANY))

    @task(WEIGHTS[BEAUTIFY])
    def beautify(self):
        self._call(*self._photo_call(BEAUTIFY))

    @task(WEIGHTS[BAD_PHOTO])
    def bad_photo(self):
        self._call(*self._photo_call(BAD_PHOTO))


class OpenLoopUser(GatewayClient):
    """The only user of an open-loop run: sends each call of the mix at its scheduled
    arrival in a greenlet of its own, waits for the last answers, then stops the run."""


    @task
    def arrivals(self):
        options = self.environment.parsed_options
        schedule = arrival_times(options.arrival_rate, options.open_loop_s, options.open_loop_arrivals,
                                 options.open_loop_seed)
        rng = random.Random(options.open_loop_seed)
        names = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=len(schedule))
        calls = Group()
        with open(options.open_loop_log or os.devnull, "a") as log:
            start = time.perf_counter()
            for at, name in zip(schedule, names):
                gevent.sleep(max(0.0, start + at - time.perf_counter()))
                calls.spawn(self._arrive, start, at, name, log)
            calls.join(timeout=options.call_timeout_s + 2)
            calls.kill()
        self.environment.runner.quit()

    def _arrive(self, start, at, name, log):
        method, request, name, expected = self._photo_call(name)
        sent = time.perf_counter()
        metadata = list(self.auth) + [(NAME_KEY, name)] + ([(EXPECT_KEY, expected)] if expected else [])
        error = None
        try:
            method(request, timeout=self.environment.parsed_options.call_timeout_s, metadata=metadata)
        except grpc.RpcError as rpc_error:
            error = rpc_error
        except BaseException as exc:  # GreenletExit: still unanswered when the run ended; else a bug. A failure either way.
            self._log_call(log, start, at, sent, name, "NOT_ANSWERED" if isinstance(exc, gevent.GreenletExit)
                           else type(exc).__name__)
            raise
        failed = failure(error, expected)
        self._log_call(log, start, at, sent, name, None if failed is None else
                       reason_of(error) if error is not None else "UNEXPECTED_SUCCESS")

    @staticmethod
    def _log_call(log, start, at, sent, name, reason):
        """One JSON line: scheduled time, outcome (reason None: as expected) and latency from the schedule."""
        done = time.perf_counter()
        log.write(json.dumps({
            "t": round(at, 4), "name": name, "ok": reason is None, "posters": POSTERS_PER_REQUEST[name],
            "reason": reason, "latency_ms": round((done - (start + at)) * 1000, 2),
            "lag_ms": round((sent - (start + at)) * 1000, 2),
        }) + "\n")


class VideoUser(GatewayClient):
    """Submits a video job, polls it until it is done and downloads the MP4: one job at a time."""

    wait_time = between(0.5, 1.0)

    @task
    def video_job(self):
        start = time.perf_counter()
        request = pb.SubmitVideoJobRequest(photo=random.choice(self.photos).data,
                                           template_id=self.environment.parsed_options.video_template)
        job = self._call(self.videos.SubmitVideoJob, request, VIDEO_SUBMIT)
        if job is None:
            return
        running_since = None
        while job.state in (pb.VIDEO_JOB_QUEUED, pb.VIDEO_JOB_RUNNING):
            if time.perf_counter() - start > VIDEO_JOB_TIMEOUT_S:
                self._report(VIDEO_JOB, time.perf_counter() - start, exception=TimeoutError(job.job_id))
                return
            time.sleep(VIDEO_POLL_S)
            job = self._call(self.videos.GetVideoJob, pb.GetVideoJobRequest(job_id=job.job_id), VIDEO_POLL) or job
            if job.state == pb.VIDEO_JOB_RUNNING and running_since is None:
                running_since = time.perf_counter()
        if job.state != pb.VIDEO_JOB_DONE:
            state = pb.VideoJobState.Name(job.state)
            self._report(VIDEO_JOB, time.perf_counter() - start,
                         exception=RuntimeError(f"{state} {job.failure_reason}".strip()))
            return
        done = time.perf_counter()
        if running_since is not None:
            self._report(VIDEO_RUNNING, done - running_since, length=job.frame_count)
        video = self._download(job.job_id)
        if video is not None:
            self._report(VIDEO_JOB, time.perf_counter() - start, length=len(video))

    def _download(self, job_id: str) -> bytes | None:
        """ReadVideoResult is a stream, which the unary interceptor does not see: timed here."""
        start = time.perf_counter()
        try:
            chunks = self.videos.ReadVideoResult(pb.ReadVideoResultRequest(job_id=job_id), timeout=TIMEOUT_S,
                                                 metadata=self.auth)
            video = b"".join(chunk.data for chunk in chunks)
        except grpc.RpcError as error:
            self._report(VIDEO_DOWNLOAD, time.perf_counter() - start, exception=error)
            return None
        self._report(VIDEO_DOWNLOAD, time.perf_counter() - start, length=len(video))
        return video


POOL: dict = {}


@events.init.add_listener
def _video_share(environment, **_):
    """Users are split by class weight; with no video share the video class is left out."""
    share = min(max(environment.parsed_options.video_share, 0.0), 1.0)
    GatewayUser.weight, VideoUser.weight = round((1 - share) * 100), round(share * 100)
    # The open loop replaces the users: it alone runs with --arrival-rate, and only then.
    open_loop = environment.parsed_options.arrival_rate > 0
    OpenLoopUser.weight = 1 if open_loop else 0
    if open_loop:
        GatewayUser.weight = VideoUser.weight = 0
    environment.user_classes[:] = [c for c in environment.user_classes if c.weight > 0]


@events.init.add_listener
def _load_photos(environment, **_):
    POOL["good"], POOL["bad"] = good_photos(), bad_photos()


class CampaignShape(LoadTestShape):
    """ramp (1, 2, 4 ... max users, step_s each), steady, or spike (a burst of max users
    in the middle of a quarter-load run)."""

    def tick(self):
        options = self.runner.environment.parsed_options
        params = ShapeParams(max_users=options.max_users, step_s=options.step_s, duration_s=options.duration_s)
        users = users_at(options.shape, self.get_run_time(), params)
        return None if users is None else (users, max(users, 1))
