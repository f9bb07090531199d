"""Triton and the gateway started together on this machine.

`in_process`: the gateway on a thread of this process (serve, demo). `gateway_process`:
the gateway as its own process (benchmarks and load tests, so that its CPU is not the
measuring process's). Both stop everything on exit.
"""

from __future__ import annotations

import contextlib
import os

from facefuse.settings import Settings, get_settings


@contextlib.contextmanager
def in_process(settings: Settings | None = None, triton_ports: tuple[int, int, int] | None = None,
               gateway_port: int | None = None, echo=print):
    """Yields (triton supervisor, gateway thread, local dev API key).

    The supervisor reads like the running TritonServer (grpc_url, listening(), ...);
    `supervisor.watch()` blocks and restarts tritonserver when it dies (serve).
    """
    from facefuse.gateway.dev_key import ensure_dev_key
    from facefuse.gateway.server import GatewayThread
    from facefuse.gateway.settings import GatewaySettings
    from facefuse.server.supervisor import TritonSupervisor
    from facefuse.server.triton import Endpoints

    settings = settings or get_settings()
    supervisor = TritonSupervisor(settings, Endpoints.from_settings(settings, triton_ports), echo=echo)
    try:
        supervisor.start()
        gateway_settings = GatewaySettings(triton_urls=[supervisor.grpc_url], triton_key=supervisor.gateway_key)
        key = ensure_dev_key(gateway_settings)
        with GatewayThread(gateway_settings, port=gateway_port) as gateway:
            yield supervisor, gateway, key
    finally:
        supervisor.stop()


@contextlib.contextmanager
def gateway_process(settings: Settings | None = None):
    """Yields (triton, gateway port, local dev API key)."""
    from facefuse.gateway.dev_key import ensure_dev_key
    from facefuse.gateway.process import start_gateway
    from facefuse.gateway.settings import GatewaySettings
    from facefuse.server.triton import embedded_triton

    with embedded_triton(settings or get_settings()) as triton:
        key = ensure_dev_key(GatewaySettings())
        process, port = start_gateway(triton.grpc_url, {**os.environ, "FACEFUSE_TRITON_GATEWAY_KEY": triton.gateway_key})
        try:
            yield triton, port, key
        finally:
            process.terminate()
            process.wait(timeout=30)
