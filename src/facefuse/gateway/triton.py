"""Calls to Triton replicas: declared retries, a hedged second attempt, load shedding.

- Each replica has its own channel whose gRPC service config retries UNAVAILABLE
  (a replica restarting, a connection reset) with backoff inside the call's deadline.
- A call goes to the least loaded replica. If it failed with UNAVAILABLE, the same
  request is sent to the next replica (a failover, once no other attempt of the call
  is running: never more than two at once). If it is still unanswered after
  `hedge_delay_ms`, it is sent once more, to the next live replica (one hedge per call,
  none when the deadline comes before the hedge delay, none to a cooling replica); the
  first answer wins and the other attempt is cancelled. Every attempt gets only what is
  left of the one deadline.
- When every replica already has `max_inflight_per_replica` calls outstanding (queued
  inside Triton or running), a new call is refused with OVERLOADED and a retry-after
  hint instead of joining a queue it would time out in. Admission is exact: a gateway
  call reserves every Triton call it will make (a FuseMany: its analysis and each
  template) in one step, before any work, and check and count happen in the same step
  of the event loop (`reserve`).
- Each Triton call carries what is left of the deadline as Triton's own request
  timeout, so a request that expires while queued is dropped from the queue rather
  than computed (the ensemble passes the timeout to every stage).
- A replica that answered UNAVAILABLE cools down for `cooldown_s`: it goes last in the
  order (a spare for failover only), so while it is down calls do not each pay a failed
  attempt first. Its first answer after that puts it back.
- A URL `dns:///name:port` stands for every address the name resolves to (Kubernetes:
  Triton's headless Service, one address per ready pod). It is resolved again at every
  readiness poll, so pods the autoscaler adds get calls within `health_poll_s`; a pod
  that left is dropped and its channel closed once its calls are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from dataclasses import dataclass

import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from facefuse.contract import PHOTO_PRIORITY
from facefuse.errors import FacefuseError, Reason, reason_from_message
from facefuse.gateway.dispatch import DeadlineQueue
from facefuse.gateway.errors import DeadlineExceeded, GatewayError, Overloaded, Unavailable
from facefuse.gateway.latency import LatencyWindow
from facefuse.gateway.observability import call_event, triton_headers
from facefuse.triton_client import with_gateway_key

TRITON_SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": "inference.GRPCInferenceService"}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
CHANNEL_ARGS = [
    ("grpc.service_config", json.dumps(TRITON_SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # Reconnect quickly after a replica comes back.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass
class Replica:
    url: str
    client: aioclient.InferenceServerClient
    in_flight: int = 0
    attempts: int = 0  # calls sent here, answered or not
    cooling_until: float = 0.0  # monotonic time; after UNAVAILABLE
    ready: bool = False  # at the last readiness poll

    def cooling(self, now: float) -> bool:
        return now < self.cooling_until


# Throughput for the admission estimate: answers over this window. A short window
# follows a burst: admitting up to rate x deadline lets the rate grow each window.
THROUGHPUT_WINDOW_S = 3.0
MIN_CALLS_TO_JUDGE = 3
# Triton while it (re)starts or after a model was unloaded: come back shortly.
UNAVAILABLE_RETRY_AFTER_S = 1.0
_NOT_LOADED = ("unknown model", "is not ready", "has no available versions", "is not found")
_TIMED_OUT = ("Deadline Exceeded", "Request timeout expired", "request timeout expired", "timed out")


def error_from_triton(exc: InferenceServerException) -> FacefuseError:
    """Triton's error -> the stable reason (stages put it at the start of their message)."""
    status = str(exc.status() or "")
    message = exc.message() or ""
    reason = reason_from_message(message)
    if reason is not None:
        detail = message.split(f"{reason.value}: ", 1)[-1]
        return GatewayError(detail, reason)
    if "DEADLINE_EXCEEDED" in status or any(t in message for t in _TIMED_OUT):
        return DeadlineExceeded("the deadline passed while Triton was working on the call")
    if "UNAVAILABLE" in status or any(t in message for t in _NOT_LOADED):
        return Unavailable("Triton is restarting or its models are not loaded; try again shortly",
                           retry_after_s=UNAVAILABLE_RETRY_AFTER_S)
    return GatewayError(f"Triton failed: {message}", Reason.INTERNAL)


DNS_PREFIX = "dns:///"


def _client(url: str, gateway_key: str | None) -> aioclient.InferenceServerClient:
    return with_gateway_key(aioclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS), gateway_key)


async def resolve(name: str, port: int) -> list[str]:
    """host:port of every address `name` resolves to, sorted (IPv6 in brackets)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    hosts = {info[4][0] for info in infos}
    return sorted(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)


class TritonPool:
    def __init__(self, urls: list[str], hedge_delay_s: float, max_inflight_per_replica: int,
                 overloaded_retry_after_s: float = 1.0, cooldown_s: float = 5.0, resolver=resolve,
                 gateway_key: str | None = None, max_dispatched_per_replica: int | None = None):
        if not urls:
            raise ValueError("at least one Triton URL is needed")
        # (name, port) of each dns:/// URL; their replicas appear at the first refresh().
        self.services = [_name_and_port(u) for u in urls if u.startswith(DNS_PREFIX)]
        self.gateway_key = gateway_key
        self.replicas = [Replica(url, _client(url, gateway_key)) for url in urls if not url.startswith(DNS_PREFIX)]
        self._static = {r.url for r in self.replicas}
        self._retiring: list[Replica] = []
        self._resolver = resolver
        self.hedge_delay_s = hedge_delay_s
        self.max_inflight = max_inflight_per_replica
        # Calls at Triton at once (per replica); admitted calls beyond wait in the gateway.
        self.max_dispatched = max_dispatched_per_replica or max_inflight_per_replica
        self.dispatch = DeadlineQueue(self.max_dispatched * max(1, len(self.replicas)))
        self._service_times: dict[str, LatencyWindow] = {}
        self.retry_after_s = overloaded_retry_after_s
        self.cooldown_s = cooldown_s
        self.hedges_sent = 0
        self.hedges_won = 0  # calls answered by their hedge (not by a failover)
        self.failovers = 0  # attempts sent to another replica after UNAVAILABLE
        self.failovers_won = 0  # calls answered by such an attempt
        self.reserved = 0  # Triton calls promised to admitted gateway calls
        self._completed: deque[float] = deque()  # when recent Triton calls were answered

    @classmethod
    def from_settings(cls, settings) -> "TritonPool":
        """The pool a gateway (or a lone video worker) runs with: GatewaySettings."""
        return cls(settings.triton_urls, settings.hedge_delay_ms / 1000, settings.max_inflight_per_replica,
                   settings.overloaded_retry_after_s, cooldown_s=settings.replica_cooldown_s,
                   gateway_key=settings.triton_key.get_secret_value() if settings.triton_key else None,
                   max_dispatched_per_replica=settings.max_dispatched_per_replica)

    def _count_completion(self) -> None:
        self._completed.append(time.monotonic())

    def throughput_per_s(self) -> float | None:
        """Triton calls answered per second over the last few seconds (None until a few
        were): under overload what the replicas can do; under light load what they
        were asked, which Little's law turns into the latency callers see anyway."""
        now = time.monotonic()
        while self._completed and self._completed[0] < now - THROUGHPUT_WINDOW_S:
            self._completed.popleft()
        return len(self._completed) / THROUGHPUT_WINDOW_S if len(self._completed) >= MIN_CALLS_TO_JUDGE else None

    def expected_wait_s(self, calls: int) -> float:
        """Little's law: the Triton calls already admitted plus these, at the recent
        answer rate (0 while that rate is unknown)."""
        rate = self.throughput_per_s()
        return (self.reserved + calls) / rate if rate else 0.0

    def capacity(self) -> int:
        """Triton calls that may be outstanding at once: the cap of each live replica."""
        now = time.monotonic()
        live = [r for r in self.replicas if not r.cooling(now)] or self.replicas
        return self.max_inflight * len(live)

    @contextlib.contextmanager
    def reserve(self, calls: int):
        """Admit a gateway call that will make up to `calls` Triton calls, or raise
        Overloaded before any of its work. No await between check and count: exact."""
        capacity = self.capacity()
        if self.reserved + calls > capacity:
            raise Overloaded(
                f"{self.reserved} Triton calls are reserved of {capacity}; this call needs {calls}; try again shortly",
                retry_after_s=self.retry_after_s,
            )
        self.reserved += calls
        try:
            yield
        finally:
            self.reserved -= calls

    async def close(self) -> None:
        for replica in self.replicas + self._retiring:
            await replica.client.close()

    async def refresh(self) -> None:
        """Resolve the dns:/// URLs again: new addresses become replicas, gone ones retire."""
        if not self.services:
            return
        resolved: list[str] = []
        for name, port in self.services:
            try:
                resolved += await self._resolver(name, port)
            except OSError:  # no answer this time: keep what we have rather than drop every pod
                return
        wanted = self._static | set(resolved)
        known = {r.url for r in self.replicas}
        self._retiring += [r for r in self.replicas if r.url not in wanted]
        self.replicas = [r for r in self.replicas if r.url in wanted]
        self.replicas += [Replica(url, _client(url, self.gateway_key)) for url in sorted(set(resolved) - known)]
        for replica in [r for r in self._retiring if r.in_flight == 0]:
            self._retiring.remove(replica)
            await replica.client.close()

    def _by_load(self) -> list[Replica]:
        """Replicas to try in order: live ones by load, then cooling ones as spares."""
        if not self.replicas:
            raise Unavailable("no Triton replica is known yet (the replica service resolved to no address)")
        now = time.monotonic()
        live = [r for r in self.replicas if not r.cooling(now)]
        # Every replica cooling: try them all anyway, one may be back.
        candidates = live or self.replicas
        available = [r for r in candidates if r.in_flight < self.max_inflight]
        if not available:
            total = sum(r.in_flight for r in candidates)
            raise Overloaded(
                f"{total} calls are in flight on {len(candidates)} Triton replica(s); try again shortly",
                retry_after_s=self.retry_after_s,
            )
        spares = [r for r in self.replicas if r not in candidates and r.in_flight < self.max_inflight]
        return sorted(available, key=lambda r: r.in_flight) + sorted(spares, key=lambda r: r.in_flight)

    async def ready(self) -> list[bool]:
        """Readiness of each replica (Triton's ready endpoint), for the health service;
        dns:/// URLs are resolved again first."""
        await self.refresh()

        async def one(replica: Replica) -> bool:
            try:
                replica.ready = bool(await replica.client.is_server_ready(client_timeout=1.0))
            except Exception:  # noqa: BLE001 - unreachable or failing: not ready
                replica.ready = False
            return replica.ready

        return list(await asyncio.gather(*(one(r) for r in self.replicas)))

    async def _attempt(self, replica: Replica, model: str, inputs, outputs, deadline: float, priority: int = 0):
        """replica.in_flight was counted by the caller, in the step that chose the replica."""
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed before Triton was called")
            replica.attempts += 1
            # timeout (microseconds): Triton drops the request from its queues once it
            # expires instead of running stages for an answer nobody waits for.
            result = await replica.client.infer(model, inputs, outputs=outputs, client_timeout=remaining,
                                                timeout=max(1, int(remaining * 1e6)), headers=triton_headers(),
                                                priority=priority)
            self._count_completion()
        except InferenceServerException as exc:
            error = error_from_triton(exc)
            if error.reason not in (Reason.DEADLINE_EXCEEDED, Reason.UNAVAILABLE):
                self._count_completion()  # a stage's answer (a bad photo): work the replica did
            if error.reason is Reason.UNAVAILABLE:
                replica.cooling_until = time.monotonic() + self.cooldown_s
            raise error from None
        replica.cooling_until = 0.0
        return result

    def calls_in_flight(self) -> int:
        """Calls at Triton (attempts) plus those waiting in the gateway's queue for it."""
        return sum(r.in_flight for r in self.replicas) + self.dispatch.waiting()

    def service_time(self, model: str) -> LatencyWindow:
        """Recent Triton answers of `model`, from dispatch (not counting the gateway's queue)."""
        window = self._service_times.get(model)
        if window is None:
            window = self._service_times[model] = LatencyWindow()
        return window

    def _resize_dispatch(self) -> None:
        """The dispatch limit follows the live replicas (dns:/// ones come and go)."""
        now = time.monotonic()
        live = [r for r in self.replicas if not r.cooling(now)] or self.replicas
        self.dispatch.resize(self.max_dispatched * max(1, len(live)))

    async def infer(self, model: str, inputs, outputs, deadline: float, service: LatencyWindow | None = None,
                    priority: int = 0):
        """Run one inference: wait in the gateway's queue for a dispatch slot (or be dropped
        there once the deadline cannot be met), then call Triton with hedging and failover.
        `service`: the window that learns this call's Triton time (default: per model).
        priority: Triton's queue level where the model has levels (0: its default).
        Raises FacefuseError subclasses."""
        service = service or self.service_time(model)
        self._resize_dispatch()
        # A call at a lower Triton priority (a video frame) also waits behind photos here.
        async with self.dispatch.slot(deadline, service.typical(), background=priority > PHOTO_PRIORITY):
            started = time.monotonic()
            result = await self._infer_now(model, inputs, outputs, deadline, priority)
            service.add(time.monotonic() - started)  # answers only: a service time
            return result

    async def _infer_now(self, model: str, inputs, outputs, deadline: float, priority: int):
        order = self._by_load()
        attempts: dict[asyncio.Task, tuple[Replica, str]] = {}

        def launch(replica: Replica, why: str, hedge_slot: bool = False) -> None:
            call_event("triton.attempt", model=model, replica=replica.url, why=why)
            # Counted now, not when the task first runs, so the cap stays exact; released
            # by a done callback, which runs even for a task cancelled before it started.
            replica.in_flight += 1
            task = asyncio.ensure_future(self._attempt(replica, model, inputs, outputs, deadline, priority))
            task.add_done_callback(lambda _: setattr(replica, "in_flight", replica.in_flight - 1))
            if hedge_slot:
                task.add_done_callback(lambda _: self.dispatch.release())
            attempts[task] = replica, why

        def hedge_target() -> Replica | None:
            # A cooling replica just refused a call: a spare for failover, not a hedge.
            now = time.monotonic()
            return next((r for r in spare if not r.cooling(now)), None)

        launch(order[0], "first")
        spare = order[1:]
        may_hedge = True  # one hedge per call: with many pods, a slow moment must not fan out to all
        last_error: FacefuseError | None = None
        try:
            while attempts:
                timeout = None
                if may_hedge and hedge_target() is not None:
                    if deadline - time.monotonic() > self.hedge_delay_s:
                        timeout = self.hedge_delay_s
                    else:  # the deadline comes first: a hedge then could not answer in time
                        may_hedge = False
                done, _ = await asyncio.wait(attempts, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # slow: hedge to the next live replica, unless calls wait for Triton
                    may_hedge = False  # (none later either; a failover reuses its own slot)
                    target = hedge_target()
                    # A hedge under overload is load, not speed: only with a free dispatch slot.
                    if target is not None and self.dispatch.take_nowait(background=priority > PHOTO_PRIORITY):
                        spare.remove(target)
                        self.hedges_sent += 1
                        launch(target, "hedge", hedge_slot=True)
                    continue
                for task in done:
                    replica, why = attempts.pop(task)
                    error = task.exception()
                    if error is None:
                        # Counted by the attempt that answered: a failover's answer is no
                        # hedge won, even though it too came from a second replica.
                        if why == "hedge":
                            self.hedges_won += 1
                        elif why == "failover":
                            self.failovers_won += 1
                        call_event("triton.answered", model=model, replica=replica.url, why=why)
                        return task.result()
                    if not isinstance(error, FacefuseError):
                        raise error
                    if error.reason is not Reason.UNAVAILABLE:
                        raise error  # the answer: the request itself is bad, or time ran out
                    call_event("triton.unavailable", model=model, replica=replica.url, why=why)
                    last_error = error
                    # That replica is down: fail over now, unless another attempt still
                    # runs (a hedge's replica refused while the first works on): at most two
                    # attempts at once, and the call's dispatch slot is free for the new one.
                    if spare and not attempts:
                        self.failovers += 1
                        launch(spare.pop(0), "failover")
            raise last_error or Unavailable("no Triton replica answered")
        finally:
            for task in attempts:
                task.cancel()


def _name_and_port(url: str) -> tuple[str, int]:
    name, _, port = url.removeprefix(DNS_PREFIX).rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"Triton URL {url!r}: write dns:///<name>:<port>, e.g. dns:///triton-pods:8001")
    return name, int(port)
