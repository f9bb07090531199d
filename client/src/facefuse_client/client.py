"""The typed SDK: `FacefuseClient` (blocking) and `AsyncFacefuseClient` (asyncio).

Every call has a deadline (default 30 s). Retries are declared in the channel's gRPC
service config, so they stay within that deadline: UNAVAILABLE backs off, and refusals
(RATE_LIMITED, OVERLOADED) wait as long as the gateway's retry-after hint says, with
jitter; nothing here loops.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

import grpc

from facefuse_client.errors import error_from_rpc
from facefuse_client.video import AsyncVideoJobs, VideoJobs
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Retries are gRPC's own (gRFC A6), within each call's deadline:
# - UNAVAILABLE (a gateway restarting) with exponential backoff;
# - RESOURCE_EXHAUSTED (RATE_LIMITED, OVERLOADED) only as the server's
#   grpc-retry-pushback-ms trailer says: its retry-after hint with jitter added, or no
#   retry when the wait would outlast the deadline or the refusal will not pass soon.
#   The error then carries retry_after_s for the caller to honour.
# Throttling stops retries while most calls on the channel fail, so a client of a
# struggling gateway does not multiply its load.
RETRY_THROTTLING = {"maxTokens": 10, "tokenRatio": 0.1}
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": "facefuse.v1.FaceFusion"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            },
        },
        {
            # A refused job submission was not stored, so trying it again is safe; an
            # UNAVAILABLE one may have been, so it is not retried.
            "name": [{"service": "facefuse.v1.VideoJobs"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["RESOURCE_EXHAUSTED"],
            },
        },
    ],
    "retryThrottling": RETRY_THROTTLING,
}
# gRPC keeps a call's request to send it again only up to this size (default 256 KiB,
# less than many photos): beyond it, a refused call would not be retried.
RETRY_BUFFER_BYTES = 16 * 1024 * 1024
FORMATS = {"jpeg": pb.JPEG, "png": pb.PNG, "webp": pb.WEBP}


@dataclass(frozen=True)
class Poster:
    template_id: str
    image: bytes
    format: str
    # How good the poster is (0..1, from the check it passed before shipping) and what
    # lowered it (e.g. SHINE, SOFT).
    quality: float = 1.0
    warnings: tuple[str, ...] = ()
    # How well the photo suits fusion (0..1) and what lowered it (e.g. STRONG_HEAD_TURN).
    photo_quality: float = 1.0
    photo_warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BeautifiedPhoto:
    image: bytes
    format: str


@dataclass(frozen=True)
class Template:
    template_id: str
    version: int
    face_count: int
    width: int
    height: int


def channel_options() -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def credentials_metadata(api_key: str | None, token: str | None) -> tuple[tuple[str, str], ...]:
    if token:
        return (("authorization", f"Bearer {token}"),)
    if api_key:
        return (("x-api-key", api_key),)
    return ()


BEAUTY_FIELDS = ("smoothing", "brightening", "slimming", "eye_enlarging")


def beauty_options(smoothing=None, brightening=None, slimming=None, eye_enlarging=None) -> pb.BeautyOptions:
    """Each 0..100 (None or 0: off); the gateway refuses others with InvalidRequestError."""
    values = {"smoothing": smoothing, "brightening": brightening, "slimming": slimming, "eye_enlarging": eye_enlarging}
    return pb.BeautyOptions(**{k: v for k, v in values.items() if v is not None})


def fuse_options(fuse_degree=None, profile_degree=None, add_label=None, output_format="jpeg", output_quality=None,
                 smoothing=None, brightening=None, slimming=None, eye_enlarging=None) -> pb.FuseOptions:
    options = pb.FuseOptions(output_format=FORMATS[output_format],
                             beauty=beauty_options(smoothing, brightening, slimming, eye_enlarging))
    if fuse_degree is not None:
        options.fuse_degree = fuse_degree
    if profile_degree is not None:
        options.profile_degree = profile_degree
    if add_label is not None:
        options.add_label = add_label
    if output_quality is not None:
        options.output_quality = output_quality
    return options


def _beautify_request(photo, face_index, add_label, output_format, output_quality, request_id, beauty
                      ) -> pb.BeautifyRequest:
    request = pb.BeautifyRequest(photo=photo, beauty=beauty_options(**beauty), output_format=FORMATS[output_format],
                                 request_id=request_id or uuid.uuid4().hex)
    if face_index is not None:
        request.face_index = face_index
    if add_label is not None:
        request.add_label = add_label
    if output_quality is not None:
        request.output_quality = output_quality
    return request


def _beautified(reply: pb.BeautifyResponse) -> BeautifiedPhoto:
    return BeautifiedPhoto(reply.image, {v: k for k, v in FORMATS.items()}.get(reply.format, "jpeg"))


def _poster(message: pb.Poster) -> Poster:
    fmt = {v: k for k, v in FORMATS.items()}.get(message.format, "jpeg")
    return Poster(message.template_id, message.image, fmt, round(message.quality, 3), tuple(message.warnings),
                  round(message.photo_quality, 3), tuple(message.photo_warnings))


def _fuse_request(photo, template_id, face_index, faces, options, request_id) -> pb.FuseRequest:
    mappings = [pb.FaceMapping(photo=p, template_face_index=i) for p, i in (faces or ())]
    return pb.FuseRequest(
        template_id=template_id, photo=photo or b"", template_face_index=face_index, faces=mappings,
        options=options, request_id=request_id or uuid.uuid4().hex,
    )


class FacefuseClient:
    """Blocking client. Use as a context manager or call close()."""

    def __init__(self, target: str, api_key: str | None = None, token: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, credentials: grpc.ChannelCredentials | None = None):
        options = channel_options()
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials
                         else grpc.insecure_channel(target, options))
        self._stub = pb_grpc.FaceFusionStub(self._channel)
        self._metadata = credentials_metadata(api_key, token)
        self.timeout_s = timeout_s
        # Fused videos as jobs: submit, get, wait, download, fuse_video.
        self.videos = VideoJobs(self._channel, self._metadata, timeout_s)

    def _call(self, method, request, timeout_s):
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def fuse(self, photo: bytes, template_id: str, *, face_index: int = 0, request_id: str = "",
             timeout_s: float | None = None, **options) -> Poster:
        """One photo into one face of a template (options: fuse_degree, profile_degree,
        add_label, output_format, output_quality, and beauty for the fused face:
        smoothing, brightening, slimming, eye_enlarging, each 0..100)."""
        request = _fuse_request(photo, template_id, face_index, None, fuse_options(**options), request_id)
        return _poster(self._call(self._stub.Fuse, request, timeout_s).poster)

    def fuse_faces(self, template_id: str, faces: Iterable[tuple[bytes, int]], *, request_id: str = "",
                   timeout_s: float | None = None, **options) -> Poster:
        """Several photos into several faces of one template: (photo, template face index) pairs."""
        request = _fuse_request(None, template_id, 0, list(faces), fuse_options(**options), request_id)
        return _poster(self._call(self._stub.Fuse, request, timeout_s).poster)

    def fuse_many(self, photo: bytes, template_ids: Sequence[str], *, request_id: str = "",
                  timeout_s: float | None = None, **options) -> list[Poster]:
        """One photo into up to 10 templates (the face is analysed once)."""
        request = pb.FuseManyRequest(photo=photo, template_ids=list(template_ids), options=fuse_options(**options),
                                     request_id=request_id or uuid.uuid4().hex)
        return [_poster(p) for p in self._call(self._stub.FuseMany, request, timeout_s).posters]

    def beautify(self, photo: bytes, *, face_index: int | None = None, add_label: bool | None = None,
                 output_format: str = "jpeg", output_quality: int | None = None, request_id: str = "",
                 timeout_s: float | None = None, **beauty) -> BeautifiedPhoto:
        """The photo with beauty applied to every face (or only face_index, numbered left
        to right): smoothing, brightening, slimming, eye_enlarging, each 0..100."""
        request = _beautify_request(photo, face_index, add_label, output_format, output_quality, request_id, beauty)
        return _beautified(self._call(self._stub.Beautify, request, timeout_s))

    def list_templates(self, timeout_s: float | None = None) -> list[Template]:
        reply = self._call(self._stub.ListTemplates, pb.ListTemplatesRequest(), timeout_s)
        return [Template(t.template_id, t.version, t.face_count, t.width, t.height) for t in reply.templates]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "FacefuseClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncFacefuseClient:
    """asyncio client with the same methods as FacefuseClient, awaitable."""

    def __init__(self, target: str, api_key: str | None = None, token: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, credentials: grpc.ChannelCredentials | None = None):
        options = channel_options()
        self._channel = (grpc.aio.secure_channel(target, credentials, options) if credentials
                         else grpc.aio.insecure_channel(target, options))
        self._stub = pb_grpc.FaceFusionStub(self._channel)
        self._metadata = credentials_metadata(api_key, token)
        self.timeout_s = timeout_s
        self.videos = AsyncVideoJobs(self._channel, self._metadata, timeout_s)

    async def _call(self, method, request, timeout_s):
        try:
            return await method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    async def fuse(self, photo: bytes, template_id: str, *, face_index: int = 0, request_id: str = "",
                   timeout_s: float | None = None, **options) -> Poster:
        request = _fuse_request(photo, template_id, face_index, None, fuse_options(**options), request_id)
        return _poster((await self._call(self._stub.Fuse, request, timeout_s)).poster)

    async def fuse_faces(self, template_id: str, faces: Iterable[tuple[bytes, int]], *, request_id: str = "",
                         timeout_s: float | None = None, **options) -> Poster:
        request = _fuse_request(None, template_id, 0, list(faces), fuse_options(**options), request_id)
        return _poster((await self._call(self._stub.Fuse, request, timeout_s)).poster)

    async def fuse_many(self, photo: bytes, template_ids: Sequence[str], *, request_id: str = "",
                        timeout_s: float | None = None, **options) -> list[Poster]:
        request = pb.FuseManyRequest(photo=photo, template_ids=list(template_ids), options=fuse_options(**options),
                                     request_id=request_id or uuid.uuid4().hex)
        return [_poster(p) for p in (await self._call(self._stub.FuseMany, request, timeout_s)).posters]

    async def beautify(self, photo: bytes, *, face_index: int | None = None, add_label: bool | None = None,
                       output_format: str = "jpeg", output_quality: int | None = None, request_id: str = "",
                       timeout_s: float | None = None, **beauty) -> BeautifiedPhoto:
        request = _beautify_request(photo, face_index, add_label, output_format, output_quality, request_id, beauty)
        return _beautified(await self._call(self._stub.Beautify, request, timeout_s))

    async def list_templates(self, timeout_s: float | None = None) -> list[Template]:
        reply = await self._call(self._stub.ListTemplates, pb.ListTemplatesRequest(), timeout_s)
        return [Template(t.template_id, t.version, t.face_count, t.width, t.height) for t in reply.templates]

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncFacefuseClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
