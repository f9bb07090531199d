"""Run the gateway: an asyncio gRPC server with health checking and reflection.

`gateway_server` is an async context manager that can bind port 0 (tests run the real
gateway in-process on a free port); `GatewayThread` runs it on its own event loop for
callers that are not asyncio (the CLI, pytest).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading

import grpc
from facefuse_client.client import MAX_MESSAGE_BYTES
from facefuse_client.v1 import facefuse_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from facefuse.gateway.admission import AdmissionInterceptor
from facefuse.gateway.handlers import add_service
from facefuse.gateway.observability import Observability
from facefuse.gateway.service import FaceFusionService
from facefuse.gateway.settings import GatewaySettings
from facefuse.gateway.triton import TritonPool
from facefuse.jobs.result_objects import result_objects
from facefuse.jobs.service import VideoJobsService
from facefuse.jobs.store import open_job_store
from facefuse.jobs.worker import VideoWorker
from facefuse.video.settings import VideoSettings, get_video_settings
from facefuse.video.templates import VideoTemplateStore

def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed (less event-loop overhead per call), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


SERVICE_NAME = facefuse_pb2.DESCRIPTOR.services_by_name["FaceFusion"].full_name
VIDEO_SERVICE_NAME = facefuse_pb2.DESCRIPTOR.services_by_name["VideoJobs"].full_name


class GatewayBindError(RuntimeError):
    """The gateway cannot listen where it was told to."""


@contextlib.asynccontextmanager
async def video_jobs(server, photos: FaceFusionService, triton: TritonPool, settings: VideoSettings | None = None):
    """Adds VideoJobs (facefuse.jobs) to a gRPC server (before it starts), guarded by the
    photo service's call guard, and runs a worker on `triton` beside it when
    settings.worker_in_gateway; yields the service (its worker as `.worker`)."""
    settings = settings or get_video_settings()
    store = open_job_store(settings)
    templates = VideoTemplateStore(settings.template_dir)
    results = result_objects(settings)
    service = VideoJobsService(photos.guard, store, templates, settings, photos.settings.max_image_bytes, results)
    add_service(service, server, "VideoJobs")  # malformed bodies: INVALID_ARGUMENT, not UNKNOWN
    service.worker = VideoWorker(store, triton, templates, settings, results=results) if settings.worker_in_gateway else None
    task = asyncio.ensure_future(service.worker.run()) if service.worker else None
    try:
        yield service
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        store.close()


@contextlib.asynccontextmanager
async def gateway_server(settings: GatewaySettings, port: int | None = None, video_settings: VideoSettings | None = None):
    """Yields (server, bound port, service, observability); stops gracefully on exit. The
    video jobs service is `service.video`. GatewayBindError, with nothing left running,
    when the port cannot be had."""
    port = settings.port if port is None else port
    address = f"{settings.host}:{port}"
    credentials = server_credentials(settings)
    check_port_free(settings.host, port)
    async with contextlib.AsyncExitStack() as started:
        triton = TritonPool.from_settings(settings)
        started.push_async_callback(triton.close)
        observability = Observability(settings, triton)
        started.callback(observability.close)
        service = FaceFusionService(settings, triton)
        # The admission interceptor goes first: it wraps the handler the observing one
        # returns, so admitted calls get their span and metrics, and refusals are decided
        # before the request is read (facefuse.gateway.admission).
        interceptors = [observability.interceptor]
        if settings.refuse_from_metadata:
            interceptors.insert(0, AdmissionInterceptor(service, observability.metrics))
        server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # A second gateway on a taken port must fail, not share it and take half its calls.
            ("grpc.so_reuseport", 0),
        ])
        started.push_async_callback(server.stop, None)
        try:
            bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise GatewayBindError(_cannot_bind(address, port, "cannot be bound"))
        add_service(service, server, "FaceFusion")
        # Bound first: a gateway that cannot listen starts no video worker.
        service.video = await started.enter_async_context(video_jobs(server, service, triton, video_settings))
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection((SERVICE_NAME, VIDEO_SERVICE_NAME,
                                             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                             reflection.SERVICE_NAME), server)
        await server.start()
        observability.start(0 if port == 0 and settings.metrics_port is not None else settings.metrics_port)
        await _set_health(health, any(await triton.ready()))
        follower = asyncio.ensure_future(_follow_triton(triton, health, settings.health_poll_s))
        try:
            yield server, bound, service, observability
        finally:
            follower.cancel()
            await _set_health(health, False)
            await server.stop(grace=5)


def _cannot_bind(address: str, port: int, why: str) -> str:
    return (f"the gateway cannot listen on {address}: the port {why}; stop what holds it or choose another "
            f"with FACEFUSE_GATEWAY_PORT or --port (0 picks a free one)")


def check_port_free(host: str, port: int) -> None:
    """GatewayBindError naming the port and the setting when something already listens on
    it. gRPC would fail too, but with a C-core log line and an untyped RuntimeError; this
    probe binds as gRPC does (SO_REUSEADDR, no SO_REUSEPORT) and lets go at once."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return  # gRPC reports an unresolvable host itself
    for family, kind, proto, _, where in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise GatewayBindError(_cannot_bind(f"{host}:{port}", port, "is in use")) from None


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS from the certificate and key files in settings; None: plaintext."""
    if not (settings.tls_cert_file or settings.tls_key_file):
        if settings.tls_client_ca_file:
            raise ValueError("FACEFUSE_GATEWAY_TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE too")
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ValueError("set both FACEFUSE_GATEWAY_TLS_CERT_FILE and FACEFUSE_GATEWAY_TLS_KEY_FILE, or neither")
    chain = [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    if settings.tls_client_ca_file:
        return grpc.ssl_server_credentials(chain, root_certificates=settings.tls_client_ca_file.read_bytes(),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials(chain)


async def _set_health(health: health_aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await health.set(name, status)


async def _follow_triton(triton: TritonPool, health: health_aio.HealthServicer, every_s: float) -> None:
    """SERVING while at least one Triton replica is ready, so load balancers and
    Kubernetes probes take a gateway with no usable replica out of rotation."""
    while True:
        await asyncio.sleep(every_s)
        await _set_health(health, any(await triton.ready()))


class GatewayThread:
    """The gateway on a background event loop: `with GatewayThread(settings, port=0) as g: g.port`."""

    def __init__(self, settings: GatewaySettings, port: int | None = None, video_settings: VideoSettings | None = None):
        self.settings, self.requested_port, self.video_settings = settings, port, video_settings
        self.port: int | None = None
        self.service: FaceFusionService | None = None
        self.metrics_port: int | None = None
        self._loop = new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="facefuse-gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with gateway_server(self.settings, self.requested_port, self.video_settings) as (
                    _, port, service, observability):
                self.port, self.service, self.metrics_port = port, service, observability.metrics_port
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the starting thread
            self._error = exc
            self._ready.set()

    def listening(self) -> str:
        """host:port it is bound to, and whether callers need TLS."""
        tls = " with TLS" if self.settings.tls_cert_file else " (plaintext)"
        host = self.settings.host
        return f"{f'[{host}]' if ':' in host else host}:{self.port}{tls}"

    def __enter__(self) -> "GatewayThread":
        self._thread.start()
        self._ready.wait(timeout=30)
        if isinstance(self._error, GatewayBindError):
            raise self._error  # typed, and its message says what to change
        if self._error is not None:
            raise RuntimeError(f"the gateway did not start: {self._error}") from self._error
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
