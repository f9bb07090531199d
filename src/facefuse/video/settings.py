"""Video settings, from FACEFUSE_VIDEO_* environment variables (units in the names)."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from facefuse.settings import get_settings


class VideoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFUSE_VIDEO_", extra="ignore")

    template_dir: Path = Field(default_factory=lambda: get_settings().var_dir / "video_templates")
    # Registration refuses longer clips: a job's cost grows with its frames.
    max_template_s: float = 30.0
    max_template_side_px: int = 1920

    # Encoding: H.264 capped at this video bit rate, with a one-second buffer (15 s at
    # 2000 kbit/s is at most 4 MB of video, plus the template's audio: under 5 MB).
    max_video_kbps: int = 2000

    # Jobs.
    jobs_dir: Path = Field(default_factory=lambda: get_settings().var_dir / "video_jobs")
    # A Redis server (redis://host:port/db) holding the queue and the jobs, shared by
    # gateways and workers on many machines; None: the embedded SQLite store in jobs_dir.
    redis_url: str | None = None
    # AES-256-GCM key for photos and results at rest, base64 (32 bytes). None: a key
    # generated once into <jobs_dir>/result.key (mode 0600).
    result_key_b64: SecretStr | None = None
    result_ttl_s: float = 24 * 3600.0
    # Run a worker inside each gateway process (the embedded default); off where
    # workers run as their own processes (`facefuse gateway video-worker`).
    worker_in_gateway: bool = True
    # Jobs one worker runs at once, and fuse calls one job keeps in flight: a photo
    # call waits behind at most this many video frames in Triton's queues.
    worker_concurrency: int = 1
    frames_in_flight: int = 4
    # A running job whose worker has not reported for this long is taken over by
    # another worker (at-least-once: the job is never lost).
    lease_s: float = 60.0
    poll_s: float = 0.2
    # Before sending frames, wait while photo calls are in flight, at most this long.
    photo_priority_max_wait_s: float = 2.0
    max_queued_jobs_per_tenant: int = 20

    # S3-compatible object storage for finished videos (facefuse.jobs.result_objects):
    # set the bucket and GetVideoJob also returns a presigned URL of the MP4. None: results
    # are only streamed by the gateway. Credentials: boto3's chain (AWS_* variables, ...).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None  # None: AWS S3; e.g. http://minio:9000
    s3_region: str = "us-east-1"
    s3_prefix: str = "videos/"
    # A URL works this long, and never past its job's expiry (result_ttl_s after done).
    s3_url_ttl_s: float = 3600.0
    # How often a worker deletes expired objects.
    s3_sweep_s: float = 60.0


@functools.lru_cache(maxsize=1)
def get_video_settings() -> VideoSettings:
    return VideoSettings()
