"""Keep one tritonserver running on fixed endpoints (`facefuse serve`).

When tritonserver dies (crash, OOM kill, `kill -9`), its backend stubs are killed and
its shared-memory regions removed (`TritonServer.reap`), then it is started again on
the same ports with the same admin key after a backoff that doubles per restart. More
than `triton_max_restarts` restarts within `triton_restart_window_s` means something is
wrong that restarting does not fix: the supervisor gives up and says why. Meanwhile the
gateway keeps running: its health turns NOT_SERVING and callers get UNAVAILABLE with a
retry-after hint instead of a refused connection.
"""

from __future__ import annotations

import time
from collections import deque

from facefuse.server.triton import Endpoints, TritonServer, TritonStartError, start_triton, wait_until_ready
from facefuse.settings import Settings


class TritonGaveUp(RuntimeError):
    """tritonserver died more often than the restart limit allows."""


class TritonSupervisor:
    """Attributes of the current `TritonServer` (grpc_url, admin_key, ...) read through."""

    def __init__(self, settings: Settings, endpoints: Endpoints, echo=print, clock=time.monotonic, sleep=time.sleep):
        self.settings = settings
        self.endpoints = endpoints
        self.echo = echo
        self._clock, self._sleep = clock, sleep
        self._restarts: deque[float] = deque()
        self.server: TritonServer | None = None
        self._admin_key: str | None = None
        self._gateway_key: str | None = None
        self.recoveries_s: list[float] = []  # death noticed -> ready again, per restart

    def __getattr__(self, name: str):
        server = self.__dict__.get("server")
        if server is None:
            raise AttributeError(name)
        return getattr(server, name)

    def start(self) -> TritonServer:
        self.server = start_triton(self.settings, self.endpoints, self._admin_key, gateway_key=self._gateway_key)
        # Restarts keep the keys the operator was shown and the gateway holds.
        self._admin_key, self._gateway_key = self.server.admin_key, self.server.gateway_key
        wait_until_ready(self.server, self.settings.triton_start_timeout_s)
        return self.server

    def backoff_s(self, restarts: int) -> float:
        s = self.settings
        return min(s.triton_restart_max_backoff_s, s.triton_restart_backoff_s * 2 ** max(0, restarts - 1))

    def watch(self, poll_s: float = 0.2) -> None:
        """Block, restarting tritonserver whenever it dies; raises TritonGaveUp."""
        while True:
            while self.server.process.poll() is None:
                self._sleep(poll_s)
            self.restart()

    def restart(self) -> None:
        died_at = self._clock()
        code = self.server.process.returncode
        self.server.reap()
        window = self.settings.triton_restart_window_s
        while self._restarts and died_at - self._restarts[0] > window:
            self._restarts.popleft()
        if len(self._restarts) >= self.settings.triton_max_restarts:
            raise TritonGaveUp(
                f"tritonserver died {len(self._restarts) + 1} times within {window:g} s "
                f"(limit FACEFUSE_TRITON_MAX_RESTARTS={self.settings.triton_max_restarts}); last exit code {code}:\n"
                f"{self.server.log_tail()}"
            )
        self._restarts.append(died_at)
        wait = self.backoff_s(len(self._restarts))
        self.echo(f"tritonserver exited with code {code}; restarting in {wait:g} s "
                  f"({len(self._restarts)} of {self.settings.triton_max_restarts} restarts allowed in {window:g} s)")
        self._sleep(wait)
        try:
            self.start()
        except TritonStartError as exc:
            self.echo(f"tritonserver failed to start again: {str(exc).splitlines()[0]}")
            return  # its process has exited: the next watch() round counts it as another death
        self.recoveries_s.append(self._clock() - died_at)
        self.echo(f"tritonserver ready again after {self.recoveries_s[-1]:.1f} s: {self.server.listening()}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
