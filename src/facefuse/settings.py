"""Typed settings, read from FACEFUSE_* environment variables (units in the names)."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package runs from (editable install): holds model_repository/."""
    return Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFUSE_", extra="ignore")

    # Where things live.
    model_repository_dir: Path = Field(default_factory=lambda: project_root() / "model_repository")
    ensembles_dir: Path = Field(default_factory=lambda: project_root() / "ensembles")
    var_dir: Path = Field(default_factory=lambda: project_root() / "var")
    template_dir: Path | None = None  # None: <var_dir>/templates

    # Input limits, checked before any pixel work.
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_side_px: int = 4096
    # Large photos are decoded at a reduced JPEG scale (DCT scaling) while their long
    # side stays at least this: the aligned face crop needs no more detail.
    decode_target_side_px: int = 2048

    # Face gates.
    min_face_px: int = 34
    detector_score_threshold: float = 0.6
    detector_nms_iou: float = 0.4
    # A photo where the detector finds no face is searched again on a tiles x tiles grid
    # (a small face in a large photo); 0 turns the second pass off.
    detector_second_pass_tiles: int = 3
    # A face whose box lies more than this fraction outside the image is refused.
    max_face_outside_fraction: float = 0.12
    # Quality gates before fusion (facefuse.vision.face_quality; README "Quality gates").
    # The face's angle away from the camera (its yaw and pitch together), in degrees.
    max_turn_deg: float = 26.0
    max_eyes_covered: float = 0.6
    max_one_eye_covered: float = 0.8
    max_face_strands: float = 0.07
    max_mouth_covered: float = 0.55
    min_face_brightness: float = 30.0
    min_face_sharpness: float = 0.03

    # Embedded Triton. Bind addresses: loopback, so only the gateway on this machine
    # reaches it; triton_host is where the gateway connects.
    triton_grpc_address: str = "127.0.0.1"
    triton_http_address: str = "127.0.0.1"
    triton_metrics_address: str = "127.0.0.1"
    triton_host: str = "127.0.0.1"
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_start_timeout_s: float = 180.0
    # Closes Triton's repository, logging, shared-memory and trace APIs to callers
    # without this key. None: a random key per start (those APIs are never open).
    triton_admin_key: SecretStr | None = None
    # Closes Triton's inference, metadata, model-config and statistics APIs to callers
    # without this key: only the gateway and facefuse's own tools (benchmarks, eval,
    # model gates) hold it. None: a random key per start, handed to the gateway `serve`
    # starts; a gateway or tool run apart from its Triton needs it set in both.
    triton_gateway_key: SecretStr | None = None
    # Started by root, tritonserver and its Python stubs run as this unprivileged user
    # (created as a system user on first use), so code loaded into the server never runs
    # as root. "" runs it as the starting user (not advised for root).
    triton_user: str = "facefuse-triton"
    # `serve` restarts a tritonserver that died: waits from the first to the most
    # backoff between tries, and gives up after this many restarts within the window.
    triton_restart_backoff_s: float = 1.0
    triton_restart_max_backoff_s: float = 30.0
    triton_max_restarts: int = 5
    triton_restart_window_s: float = 600.0
    # Starts in a row that die before the server is ready (these spend no restart budget).
    triton_max_failed_starts: int = 3
    # OTLP/HTTP endpoint for Triton's OpenTelemetry spans (server.triton.trace_flags);
    # None: Triton does not trace.
    triton_otlp_traces_url: str | None = None

    @property
    def templates_path(self) -> Path:
        return self.template_dir or self.var_dir / "templates"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
