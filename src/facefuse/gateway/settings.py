"""Gateway settings, from FACEFUSE_GATEWAY_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from facefuse.settings import get_settings


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFUSE_GATEWAY_", extra="ignore")

    # Loopback unless told otherwise: exposing the gateway is a deliberate setting
    # (0.0.0.0 in a container), and then TLS should be on (tls_cert_file, tls_key_file).
    host: str = "127.0.0.1"
    port: int = 50051
    # TLS: PEM certificate chain and private key; both or neither. With a client CA,
    # callers must present a certificate it signed (mTLS).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Triton replicas (gRPC host:port); the second and later take hedged and failed-over calls.
    # dns:///name:port stands for every address the name resolves to (a Kubernetes
    # headless Service), resolved again every health_poll_s.
    triton_urls: list[str] = Field(default_factory=lambda: [f"{get_settings().triton_host}:{get_settings().triton_grpc_port}"])
    # Sent to Triton with every call (its inference APIs refuse callers without it).
    # Default FACEFUSE_TRITON_GATEWAY_KEY, which Triton is started with.
    triton_key: SecretStr | None = Field(default_factory=lambda: get_settings().triton_gateway_key)
    # A call still unanswered after this long is also sent to another replica.
    hedge_delay_ms: float = 1500.0
    # Deadline for callers that send none, and the most any call may ask for.
    default_timeout_s: float = 30.0
    max_timeout_s: float = 120.0
    # Of the caller's deadline, kept back so the gateway's own DEADLINE_EXCEEDED (with its
    # reason) reaches the caller before the caller's timer fires.
    deadline_margin_ms: float = 50.0
    # A replica that answered UNAVAILABLE is tried only after the others for this long,
    # so calls stop paying a failed attempt each while it is down or restarting.
    replica_cooldown_s: float = 5.0
    # How often replica readiness is polled for the gateway's own health status.
    health_poll_s: float = 2.0
    # Load shedding: calls in flight to one replica (queued in Triton or running) before
    # new calls are refused with OVERLOADED rather than left to miss their deadlines.
    max_inflight_per_replica: int = 64
    # Of those, calls sent to the replica at once; the others wait in the gateway's queue
    # and are dropped there (DEADLINE_EXCEEDED) once their deadline no longer leaves
    # Triton's typical answer time, so Triton never computes a call that would come back
    # late (facefuse.gateway.dispatch). Enough to keep a CPU replica's stages busy (on the
    # 2-core test machine 2 calls gave the best rate within a 1 s deadline; 8 at once
    # all missed it); on a GPU raise it so the dynamic batcher has calls to batch.
    max_dispatched_per_replica: int = 2
    # A call is admitted only if the wait predicted for it (calls admitted ahead / recent
    # throughput, Little's law) fits in this share of its deadline; else OVERLOADED at once.
    admission_deadline_share: float = Field(default=0.8, gt=0.0, le=1.0)
    overloaded_retry_after_s: float = 1.0
    # Refuse a call (bad credentials, quota, no free Triton call) from its metadata,
    # before its photo is read (facefuse.gateway.admission). Off: the same refusals,
    # decided after the request is read; kept for `bench shedding --compare`.
    refuse_from_metadata: bool = True

    max_image_bytes: int = Field(default_factory=lambda: get_settings().max_image_bytes)
    max_templates_per_call: int = 10
    template_dir: Path = Field(default_factory=lambda: get_settings().templates_path)
    # Model release state (`facefuse models canary|promote|rollback`): which release
    # serves and the candidate's canary share. None or no file: the plain ensembles.
    releases_file: Path | None = Field(default_factory=lambda: get_settings().model_repository_dir / ".releases.json")

    # Auth: API keys (stored as sha256 hashes) and/or JWTs.
    keys_file: Path | None = Field(default_factory=lambda: get_settings().var_dir / "gateway" / "keys.json")
    # SecretStr: shown as '**********' wherever settings are printed or logged.
    jwt_hs256_secret: SecretStr | None = None
    jwt_rs256_public_key_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Limits of JWT tenants (API keys carry their own).
    jwt_rate_per_s: float = 20.0
    jwt_burst: int = 40
    jwt_max_concurrency: int = 16

    # Observability (facefuse.gateway.observability).
    # Prometheus /metrics; loopback unless set otherwise (the Helm chart sets 0.0.0.0 and a
    # NetworkPolicy). None: no metrics endpoint. A gateway started on port 0 (tests, the
    # demo, benches) takes a free metrics port too, so several can run side by side.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464
    # OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces. None: no
    # tracing, and no span is created.
    otlp_traces_url: str | None = None
    trace_service_name: str = "facefuse-gateway"
    # Share of calls traced (a caller's sampled traceparent is always followed).
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # `gateway run` logs: json (one object per line, for log collectors) or text.
    log_format: Literal["json", "text"] = "json"
