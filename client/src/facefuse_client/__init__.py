"""Client SDK for the facefuse gateway (gRPC API facefuse.v1)."""

from facefuse_client.client import AsyncFacefuseClient, BeautifiedPhoto, FacefuseClient, Poster, Template
from facefuse_client.errors import (
    AuthError, FacefuseError, InvalidPhotoError, InvalidRequestError, RetryableError, TemplateNotFoundError,
)
from facefuse_client.errors import JobNotDoneError, JobNotFoundError
from facefuse_client.video import VideoJob, VideoJobFailed, VideoTemplate

__all__ = [
    "AsyncFacefuseClient", "AuthError", "BeautifiedPhoto", "FacefuseClient", "FacefuseError", "InvalidPhotoError",
    "InvalidRequestError", "Poster", "RetryableError", "Template", "TemplateNotFoundError",
    "JobNotDoneError", "JobNotFoundError", "VideoJob", "VideoJobFailed", "VideoTemplate",
]
