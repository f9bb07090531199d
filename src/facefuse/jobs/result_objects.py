"""Finished videos in S3-compatible object storage, handed out as presigned URLs.

Where FACEFUSE_VIDEO_S3_BUCKET is set, the worker uploads each finished MP4 to
`<prefix><job id>.mp4` and GetVideoJob answers with a presigned GET URL of it, valid for
`s3_url_ttl_s` but never past the job's own expiry. The caller downloads a playable MP4
through the URL, so the object is not sealed with the jobs' AES-GCM key (its bytes would
be unplayable); it is encrypted at rest by the object store instead (server-side
encryption, SSE-S3 `AES256`, asked for on every upload), and the URL itself is the
bearer secret: whoever holds it can read the video until it expires. The local store
keeps its AES-GCM copy for ReadVideoResult. Objects older than the results' lifetime
are deleted by the workers' sweep (the S3 list's LastModified), whatever the store.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
a profile, an instance role), never from facefuse's settings files.
"""

from __future__ import annotations

import time

from facefuse.video.settings import VideoSettings


class ResultObjects:
    def __init__(self, settings: VideoSettings):
        import boto3  # imported only where a bucket is configured
        from botocore.config import Config

        if not settings.s3_bucket:
            raise ValueError("ResultObjects needs FACEFUSE_VIDEO_S3_BUCKET")
        self.bucket, self.prefix = settings.s3_bucket, settings.s3_prefix
        self.result_ttl_s, self.url_ttl_s = settings.result_ttl_s, settings.s3_url_ttl_s
        self.client = boto3.client(
            "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region,
            # Path-style addressing: S3-compatible servers (MinIO, moto, Ceph) on one host name.
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def key(self, job_id: str) -> str:
        return f"{self.prefix}{job_id}.mp4"

    def put(self, job_id: str, video: bytes) -> None:
        """Idempotent: a job done twice (at-least-once) writes the same key again."""
        self.client.put_object(Bucket=self.bucket, Key=self.key(job_id), Body=video, ContentType="video/mp4",
                               ServerSideEncryption="AES256")

    def url(self, job_id: str, job_expires_s: float, now: float | None = None) -> tuple[str, float] | None:
        """(presigned GET URL, when it stops working), or None when the job expires within a second.
        Presigning is computed here, with no call to the store."""
        now = time.time() if now is None else now
        valid_s = int(min(self.url_ttl_s, job_expires_s - now))
        if valid_s < 1:
            return None
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(job_id)}, ExpiresIn=valid_s)
        return url, now + valid_s

    def delete_expired(self, now: float | None = None) -> int:
        """Delete results older than the results' lifetime; returns how many."""
        now = time.time() if now is None else now
        expired = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            expired += [{"Key": o["Key"]} for o in page.get("Contents", ())
                        if o["LastModified"].timestamp() + self.result_ttl_s < now]
        for start in range(0, len(expired), 1000):  # S3's most keys per DeleteObjects
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": expired[start:start + 1000], "Quiet": True})
        return len(expired)


def result_objects(settings: VideoSettings) -> ResultObjects | None:
    return ResultObjects(settings) if settings.s3_bucket else None
