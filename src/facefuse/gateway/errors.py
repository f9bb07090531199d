"""Gateway failures, and the one place they become gRPC statuses."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
from facefuse_client.errors import (  # the wire contract lives with the proto
    REASON_KEY,
    RETRY_AFTER_KEY,
)
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from facefuse.errors import FacefuseError, Reason

DOMAIN = "facefuse.v1"

STATUS_OF_REASON = {
    Reason.NO_FACE_DETECTED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FACE_TOO_SMALL: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FACE_EXCEEDS_BORDER: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FACE_POSE_UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FACE_OCCLUDED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FACE_QUALITY_LOW: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FUSION_QUALITY_LOW: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.IMAGE_DECODE_FAILED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.IMAGE_FORMAT_UNSUPPORTED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.IMAGE_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.IMAGE_PIXELS_EXCEEDED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.TEMPLATE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.TEMPLATE_FACE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.INTERNAL: grpc.StatusCode.INTERNAL,
    Reason.JOB_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.JOB_NOT_DONE: grpc.StatusCode.FAILED_PRECONDITION,  # the request is fine; the job's state is not
}


class GatewayError(FacefuseError):
    """A failure decided by the gateway; `retry_after_s` where waiting helps."""

    retry_after_s: float | None = None

    def __init__(self, detail: str, reason: Reason | None = None, retry_after_s: float | None = None):
        super().__init__(detail, reason)
        self.retry_after_s = retry_after_s


class Unauthenticated(GatewayError):
    reason = Reason.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    reason = Reason.PERMISSION_DENIED


class RateLimited(GatewayError):
    reason = Reason.RATE_LIMITED


class Overloaded(GatewayError):
    reason = Reason.OVERLOADED


class Unavailable(GatewayError):
    reason = Reason.UNAVAILABLE


class DeadlineExceeded(GatewayError):
    reason = Reason.DEADLINE_EXCEEDED


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple


# gRPC's own retry policy reads this trailer (gRFC A6): a client whose retryPolicy lists
# RESOURCE_EXHAUSTED waits exactly this long before its next attempt; a negative value
# stops its retries. The SDK's service config does (facefuse_client.client).
PUSHBACK_KEY = "grpc-retry-pushback-ms"
# The pushback is the retry-after hint stretched by a random 0..50 %, so callers refused
# together do not all come back in the same instant.
PUSHBACK_JITTER = 0.5


def pushback_ms(retry_after_s: float | None, time_remaining_s: float | None, rand=random.random) -> int:
    """What gRPC retry policies should wait: the jittered hint, or -1 (do not retry)
    when there is no hint or the wait would outlast the call's deadline (a retry that
    cannot happen in time would turn the refusal into a bare DEADLINE_EXCEEDED)."""
    if retry_after_s is None:
        return -1
    wait_ms = int(retry_after_s * (1 + PUSHBACK_JITTER * rand()) * 1000)
    if time_remaining_s is not None and wait_ms >= time_remaining_s * 1000:
        return -1
    return wait_ms


def status_for(error: FacefuseError, time_remaining_s: float | None = None) -> grpc.Status:
    """gRPC status + google.rpc details (ErrorInfo, RetryInfo) + plain trailing keys.
    A RESOURCE_EXHAUSTED refusal also says when gRPC retry policies may try again
    (PUSHBACK_KEY), within `time_remaining_s` of the call's deadline."""
    code = STATUS_OF_REASON.get(error.reason, grpc.StatusCode.INTERNAL)
    info = error_details_pb2.ErrorInfo(reason=error.reason.value, domain=DOMAIN)
    details = status_pb2.Status(code=code.value[0], message=error.detail)
    details.details.add().Pack(info)
    trailing = [(REASON_KEY, error.reason.value)]
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
            seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9)))
        details.details.add().Pack(retry)
        trailing.append((RETRY_AFTER_KEY, str(int(retry_after * 1000))))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailing.append((PUSHBACK_KEY, str(pushback_ms(retry_after, time_remaining_s))))
    converted = rpc_status.to_status(details)
    return _Status(code, error.detail, tuple(converted.trailing_metadata) + tuple(trailing))
