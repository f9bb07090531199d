"""Keep one tritonserver running on fixed endpoints (`facefuse serve`).

When tritonserver dies (crash, OOM kill, `kill -9`), its backend stubs are killed and
its shared-memory regions removed (`TritonServer.reap`), then it is started again on
the same ports with the same keys after a backoff that doubles per restart. More than
`triton_max_restarts` deaths of a ready server within `triton_restart_window_s`, or
`triton_max_failed_starts` starts in a row that die before they are ready, mean
something is wrong that restarting does not fix: the supervisor gives up and says why.
Every start keeps the logs of the ones before it (tritonserver-PORT.log.1, .2, ...).

Starting and restarting is a plain exec (facefuse.server.launch), so it is safe from
`serve`, whose gateway runs gRPC threads in the same process: nothing runs between
fork and exec there. Meanwhile the
gateway keeps running: its health turns NOT_SERVING and callers get UNAVAILABLE with a
retry-after hint instead of a refused connection.
"""

from __future__ import annotations

import time
from collections import deque

from facefuse.server.triton import (
    Endpoints,
    TritonServer,
    TritonStartError,
    exit_description,
    start_triton,
    wait_until_ready,
)
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
                if not self.server.private_shm:
                    # Stubs of versions loaded later (`models publish`) make new regions.
                    self.server.make_regions_private()
            self.restart()

    def restart(self) -> None:
        """After a ready server died: start it again. Only such deaths spend the restart
        budget; a start that dies before it is ready is reported (how it ended, where its
        log is kept) and tried again, up to triton_max_failed_starts times in a row."""
        died_at = self._clock()
        death = exit_description(self.server.process.returncode)
        log_path = self.server.log_path
        self.server.reap()
        window = self.settings.triton_restart_window_s
        while self._restarts and died_at - self._restarts[0] > window:
            self._restarts.popleft()
        if len(self._restarts) >= self.settings.triton_max_restarts:
            raise TritonGaveUp(
                f"tritonserver died {len(self._restarts) + 1} times within {window:g} s "
                f"(limit FACEFUSE_TRITON_MAX_RESTARTS={self.settings.triton_max_restarts}); it {death}; log {log_path}:\n"
                f"{self.server.log_tail()}"
            )
        self._restarts.append(died_at)
        self.echo(f"tritonserver {death} (log {log_path}); restarting "
                  f"({len(self._restarts)} of {self.settings.triton_max_restarts} restarts allowed in {window:g} s)")
        failed_starts = 0
        while True:
            self._sleep(self.backoff_s(len(self._restarts) + failed_starts))
            try:
                self.start()
                break
            except TritonStartError as exc:
                failed_starts += 1
                self.echo(f"tritonserver failed to start again: {str(exc).splitlines()[0]}")
                if failed_starts >= self.settings.triton_max_failed_starts:
                    raise TritonGaveUp(
                        f"tritonserver failed to start {failed_starts} times in a row after it {death} "
                        f"(limit FACEFUSE_TRITON_MAX_FAILED_STARTS={self.settings.triton_max_failed_starts}):\n{exc}"
                    ) from None
        self.recoveries_s.append(self._clock() - died_at)
        self.echo(f"tritonserver ready again after {self.recoveries_s[-1]:.1f} s: {self.server.listening()}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
