"""Stable failure reasons and the exception root of the serving stages.

A reason is a contract with callers: it reaches them unchanged through Triton, the
gateway and the client SDK. Stages raise a `FacefuseError`; the Triton adapter turns
it into a per-request error whose message starts with the reason, and the gateway
parses the reason back out of that message (`reason_from_message`).
"""

from __future__ import annotations

import enum
import re


class Reason(str, enum.Enum):
    NO_FACE_DETECTED = "NO_FACE_DETECTED"
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    FACE_EXCEEDS_BORDER = "FACE_EXCEEDS_BORDER"
    FACE_POSE_UNSUPPORTED = "FACE_POSE_UNSUPPORTED"
    FACE_OCCLUDED = "FACE_OCCLUDED"
    FACE_QUALITY_LOW = "FACE_QUALITY_LOW"
    # The fused poster failed the check before it ships (postprocess's verification).
    FUSION_QUALITY_LOW = "FUSION_QUALITY_LOW"
    IMAGE_DECODE_FAILED = "IMAGE_DECODE_FAILED"
    IMAGE_FORMAT_UNSUPPORTED = "IMAGE_FORMAT_UNSUPPORTED"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_PIXELS_EXCEEDED = "IMAGE_PIXELS_EXCEEDED"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    TEMPLATE_FACE_NOT_FOUND = "TEMPLATE_FACE_NOT_FOUND"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    OVERLOADED = "OVERLOADED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    # Video jobs: no such job for this caller (unknown id, or another tenant's).
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    # Video jobs: the job has no result to read (queued, running, failed, cancelled, expired).
    JOB_NOT_DONE = "JOB_NOT_DONE"


_REASON_PATTERN = re.compile(r"\b(" + "|".join(r.value for r in Reason) + r")\b")


def reason_from_message(message: str) -> Reason | None:
    """The first stable reason named in an error message (Triton prefixes its own text)."""
    match = _REASON_PATTERN.search(message or "")
    return Reason(match.group(1)) if match else None


class FacefuseError(Exception):
    """A request the stages cannot serve; `reason` is what the caller sees."""

    reason: Reason = Reason.INTERNAL

    def __init__(self, detail: str, reason: Reason | None = None):
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(f"{self.reason.value}: {detail}")


class ImageError(FacefuseError):
    """The uploaded bytes are not an image we can use."""

    reason = Reason.IMAGE_DECODE_FAILED


class FaceError(FacefuseError):
    """The image decoded but holds no usable face."""

    reason = Reason.NO_FACE_DETECTED


class TemplateError(FacefuseError):
    """The template (or a face index in it) does not exist."""

    reason = Reason.TEMPLATE_NOT_FOUND


class OptionError(FacefuseError):
    """A request option is out of range."""

    reason = Reason.INVALID_ARGUMENT
