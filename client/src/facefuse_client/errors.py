"""Typed errors: every failed call raises a FacefuseError carrying the server's stable reason."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

REASON_KEY = "facefuse-reason"
RETRY_AFTER_KEY = "retry-after-ms"


class FacefuseError(Exception):
    """A call failed. `reason` is stable (NO_FACE_DETECTED, RATE_LIMITED, ...)."""

    def __init__(self, reason: str, code: grpc.StatusCode, message: str, retry_after_s: float | None = None):
        self.reason, self.code, self.message, self.retry_after_s = reason, code, message, retry_after_s
        hint = f" (retry after {retry_after_s:g} s)" if retry_after_s is not None else ""
        super().__init__(f"{reason}: {message}{hint}")


class InvalidPhotoError(FacefuseError):
    """The photo cannot be fused: no usable face, undecodable, too large."""


class TemplateNotFoundError(FacefuseError):
    """No such template, or no such face in it."""


class InvalidRequestError(FacefuseError):
    """An option is out of range or the request is malformed."""


class AuthError(FacefuseError):
    """UNAUTHENTICATED (no or bad credentials) or PERMISSION_DENIED (missing scope)."""


class JobNotFoundError(FacefuseError):
    """No such video job for this caller (unknown id, or another tenant's)."""


class JobNotDoneError(FacefuseError):
    """The video job has no result to read: it is not done (queued, running), or it ended
    without one (failed, cancelled, expired). FAILED_PRECONDITION: poll it first."""


class RetryableError(FacefuseError):
    """Try again later: RATE_LIMITED, OVERLOADED, UNAVAILABLE, DEADLINE_EXCEEDED."""


_CLASSES = {
    "NO_FACE_DETECTED": InvalidPhotoError,
    "FACE_TOO_SMALL": InvalidPhotoError,
    "FACE_EXCEEDS_BORDER": InvalidPhotoError,
    "FACE_POSE_UNSUPPORTED": InvalidPhotoError,
    "FACE_OCCLUDED": InvalidPhotoError,
    "FACE_QUALITY_LOW": InvalidPhotoError,
    "FUSION_QUALITY_LOW": InvalidPhotoError,
    "IMAGE_DECODE_FAILED": InvalidPhotoError,
    "IMAGE_FORMAT_UNSUPPORTED": InvalidPhotoError,
    "IMAGE_TOO_LARGE": InvalidPhotoError,
    "IMAGE_PIXELS_EXCEEDED": InvalidPhotoError,
    "TEMPLATE_NOT_FOUND": TemplateNotFoundError,
    "TEMPLATE_FACE_NOT_FOUND": TemplateNotFoundError,
    "JOB_NOT_FOUND": JobNotFoundError,
    "JOB_NOT_DONE": JobNotDoneError,
    "INVALID_ARGUMENT": InvalidRequestError,
    "UNAUTHENTICATED": AuthError,
    "PERMISSION_DENIED": AuthError,
    "RATE_LIMITED": RetryableError,
    "OVERLOADED": RetryableError,
    "UNAVAILABLE": RetryableError,
    "DEADLINE_EXCEEDED": RetryableError,
}


def error_from_rpc(error: grpc.RpcError) -> FacefuseError:
    """The typed error for a failed call (sync or asyncio)."""
    code = error.code()
    message = error.details() or ""
    reason, retry_after_s = None, None
    status = _status(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after_s = retry.retry_delay.ToTimedelta().total_seconds()
    if reason is None:
        # Failures raised by gRPC itself (deadline, unreachable server) carry no details.
        reason = code.name if code.name in _CLASSES else "INTERNAL"
    return _CLASSES.get(reason, FacefuseError)(reason, code, message, retry_after_s)


def _status(error: grpc.RpcError):
    try:
        if isinstance(error, grpc.aio.AioRpcError):
            metadata = tuple(error.trailing_metadata() or ())
            for key, value in metadata:
                if key == "grpc-status-details-bin":
                    from google.rpc import status_pb2

                    return status_pb2.Status.FromString(value)
            return None
        return rpc_status.from_call(error)
    except (ValueError, AttributeError):
        return None
