"""Full-link load test: Locust users calling the facefuse gateway over gRPC.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:50051 --shape ramp --max-users 8

(`facefuse loadtest run` starts the servers, runs this, records Triton's metrics and
writes the capacity report.) gRPC is patched for gevent, and every call's timing reaches
Locust through a client interceptor firing `events.request`.

The mix: Fuse into one template (most calls), FuseMany into five templates, and a few
percent of bad photos that must come back with their typed reason; a correct refusal
counts as a success, anything else as a failure.
"""

from __future__ import annotations

import os
import random
import time

from locust import LoadTestShape, User, between, events, task

import grpc  # isort: skip - after locust, which patches the standard library for gevent
import grpc.experimental.gevent as grpc_gevent  # isort: skip

grpc_gevent.init_gevent()

from facefuse_client.client import MAX_MESSAGE_BYTES  # noqa: E402
from facefuse_client.errors import REASON_KEY  # noqa: E402
from facefuse_client.v1 import facefuse_pb2 as pb  # noqa: E402
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc  # noqa: E402

from facefuse.capacity.mix import (  # noqa: E402
    BAD_PHOTO, FUSE, FUSE_MANY, FUSE_MANY_TEMPLATES, SINGLE_FACE_TEMPLATES, WEIGHTS,
)
from facefuse.capacity.photo_pool import bad_photos, good_photos  # noqa: E402
from facefuse.capacity.shapes import ShapeParams, users_at  # noqa: E402

NAME_KEY, EXPECT_KEY = "x-locust-name", "x-locust-expect"
TIMEOUT_S = 60.0


@events.init_command_line_parser.add_listener
def _arguments(parser):
    parser.add_argument("--shape", default="ramp", help="ramp | steady | spike")
    parser.add_argument("--max-users", type=int, default=8)
    parser.add_argument("--step-s", type=float, default=10.0, help="ramp: seconds per user level")
    parser.add_argument("--duration-s", type=float, default=30.0, help="steady, spike: length of the run")
    parser.add_argument("--api-key", default=os.environ.get("FACEFUSE_API_KEY", ""), help="gateway API key")


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
        exception, length = None, 0
        if error is None:
            length = call.result().ByteSize()
            if expected:
                exception = AssertionError(f"expected {expected}, the call succeeded")
        else:
            reason = dict(error.trailing_metadata() or ()).get(REASON_KEY, error.code().name)
            if reason != expected:
                exception = error
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=elapsed_ms, response_length=length,
            exception=exception, context={},
        )
        return call


class GatewayUser(User):
    wait_time = between(0.0, 0.2)

    def on_start(self):
        self.photos, self.bad = POOL["good"], POOL["bad"]
        host = self.environment.host or "127.0.0.1:50051"
        channel = grpc.intercept_channel(
            grpc.insecure_channel(host, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]),
            LocustInterceptor(self.environment),
        )
        self.channel, self.stub = channel, pb_grpc.FaceFusionStub(channel)
        self.auth = (("x-api-key", self.environment.parsed_options.api_key),)

    def on_stop(self):
        self.channel.close()

    def _call(self, method, request, name, expect=None):
        metadata = list(self.auth) + [(NAME_KEY, name)] + ([(EXPECT_KEY, expect)] if expect else [])
        try:
            method(request, timeout=TIMEOUT_S, metadata=metadata)
        except grpc.RpcError:
            pass  # reported by the interceptor

    @task(WEIGHTS[FUSE])
    def fuse(self):
        photo = random.choice(self.photos)
        request = pb.FuseRequest(photo=photo.data, template_id=random.choice(SINGLE_FACE_TEMPLATES))
        self._call(self.stub.Fuse, request, FUSE)

    @task(WEIGHTS[FUSE_MANY])
    def fuse_many(self):
        photo = random.choice(self.photos)
        request = pb.FuseManyRequest(photo=photo.data, template_ids=list(FUSE_MANY_TEMPLATES))
        self._call(self.stub.FuseMany, request, FUSE_MANY)

    @task(WEIGHTS[BAD_PHOTO])
    def bad_photo(self):
        photo = random.choice(self.bad)
        request = pb.FuseRequest(photo=photo.data, template_id=random.choice(SINGLE_FACE_TEMPLATES))
        self._call(self.stub.Fuse, request, BAD_PHOTO, expect=photo.expected_reason)


POOL: dict = {}


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
