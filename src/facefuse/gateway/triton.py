"""Calls to Triton replicas: admission, a gateway-side dispatch queue, hedging and failover.

`TritonPool` is what the rest of the gateway uses; it joins small pieces, each with one job:

- `ReplicaSet` (facefuse.gateway.replicas): which replicas there are (static URLs and
  dns:/// ones resolved again at each readiness poll), their readiness, their channels
  with declared retries, and which are live (not cooling down after UNAVAILABLE).
- `Admission` (here): when every live replica already has `max_inflight_per_replica`
  calls outstanding (queued inside Triton or running), a new call is refused with
  OVERLOADED and a retry-after hint instead of joining a queue it would time out in.
  Admission is exact: a gateway call reserves every Triton call it will make (a
  FuseMany: its analysis and each template) in one step, before any work, and check and
  count happen in the same step of the event loop (`reserve`). Its wait estimate
  divides the calls reserved by the recent answer rate (`Throughput`).
- `DeadlineQueue` (facefuse.gateway.dispatch): few calls at Triton at once, the others
  wait in the gateway and are dropped once their deadline cannot be met.
- `Hedger` (facefuse.gateway.hedging): a call's attempts, the first to the least
  loaded replica, at most one hedge, a failover after UNAVAILABLE.

Each Triton call carries what is left of the deadline as Triton's own request timeout,
so a request that expires while queued is dropped from the queue rather than computed
(the ensemble passes the timeout to every stage).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque

from tritonclient.utils import InferenceServerException

from facefuse.contract import PHOTO_PRIORITY
from facefuse.errors import FacefuseError, Reason, reason_from_message
from facefuse.gateway.dispatch import DeadlineQueue
from facefuse.gateway.errors import DeadlineExceeded, GatewayError, Overloaded, Unavailable
from facefuse.gateway.hedging import Hedger
from facefuse.gateway.latency import LatencyWindow
from facefuse.gateway.observability import triton_headers
from facefuse.gateway.replicas import Replica, ReplicaSet, resolve

# Throughput for the admission estimate: answers over this window. A short window
# follows a burst: admitting up to rate x deadline lets the rate grow each window.
THROUGHPUT_WINDOW_S = 3.0
MIN_CALLS_TO_JUDGE = 3
# The answer rate is read over at least this span: a burst's first answers, come
# together, would otherwise read as a rate without bound.
MIN_THROUGHPUT_SPAN_S = 0.25
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


class Throughput:
    """Triton calls answered per second over the last `window_s`, or over the time since
    answers began if that is shorter: right after start-up or a quiet spell the window
    holds only the last moment's answers, and dividing them by the whole window read a
    replica answering 30 calls/s as 1/s (admission then refused the first calls of every
    burst as waiting seconds)."""

    def __init__(self, window_s: float = THROUGHPUT_WINDOW_S, min_calls: int = MIN_CALLS_TO_JUDGE):
        self.window_s = window_s
        self.min_calls = min_calls
        self._completed: deque[float] = deque()  # when recent Triton calls were answered
        self._since = 0.0  # when the answers in the window began (the deque last filled from empty)

    def _forget_old(self, now: float) -> None:
        while self._completed and self._completed[0] < now - self.window_s:
            self._completed.popleft()

    def count(self) -> None:
        now = time.monotonic()
        self._forget_old(now)
        if not self._completed:
            self._since = now
        self._completed.append(now)

    def per_s(self) -> float | None:
        """None until a few calls were answered: under overload what the replicas can do;
        under light load what they were asked, which Little's law turns into the latency
        callers see anyway."""
        now = time.monotonic()
        self._forget_old(now)
        if len(self._completed) < self.min_calls:
            return None
        span = min(self.window_s, max(now - self._since, MIN_THROUGHPUT_SPAN_S))
        return len(self._completed) / span


class Admission:
    """Which calls may go to Triton: the per-replica cap on calls outstanding, the calls
    reserved by admitted gateway calls, and the order a call tries replicas in."""

    def __init__(self, replicas: ReplicaSet, max_inflight_per_replica: int, retry_after_s: float,
                 throughput: Throughput):
        self.replicas = replicas
        self.max_inflight = max_inflight_per_replica
        self.retry_after_s = retry_after_s
        self.throughput = throughput
        self.reserved = 0  # Triton calls promised to admitted gateway calls

    def capacity(self) -> int:
        """Triton calls that may be outstanding at once: the cap of each live replica."""
        return self.max_inflight * len(self.replicas.live())

    def expected_wait_s(self, calls: int) -> float:
        """Little's law: the Triton calls already admitted plus these, at the recent
        answer rate (0 while that rate is unknown)."""
        rate = self.throughput.per_s()
        return (self.reserved + calls) / rate if rate else 0.0

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

    def order(self) -> list[Replica]:
        """Replicas a call tries, in order: live ones with room by load, then cooling ones
        with room as spares. Overloaded when every live one is at its cap."""
        if not self.replicas.replicas:
            raise Unavailable("no Triton replica is known yet (the replica service resolved to no address)")
        live = self.replicas.live()
        available = [r for r in live if r.in_flight < self.max_inflight]
        if not available:
            total = sum(r.in_flight for r in live)
            raise Overloaded(
                f"{total} calls are in flight on {len(live)} Triton replica(s); try again shortly",
                retry_after_s=self.retry_after_s,
            )
        spares = [r for r in self.replicas.replicas if r not in live and r.in_flight < self.max_inflight]
        return sorted(available, key=lambda r: r.in_flight) + sorted(spares, key=lambda r: r.in_flight)


class TritonPool:
    """The gateway's way to Triton: admission (`reserve`, `capacity`, `expected_wait_s`),
    `infer`, replica health (`ready`) and the hedge/failover counters for metrics."""

    def __init__(self, urls: list[str], hedge_delay_s: float, max_inflight_per_replica: int,
                 overloaded_retry_after_s: float = 1.0, cooldown_s: float = 5.0, resolver=resolve,
                 gateway_key: str | None = None, max_dispatched_per_replica: int | None = None):
        self.replica_set = ReplicaSet(urls, gateway_key, resolver, cooldown_s)
        self.throughput = Throughput()
        self.admission = Admission(self.replica_set, max_inflight_per_replica, overloaded_retry_after_s,
                                   self.throughput)
        # Calls at Triton at once (per live replica); admitted calls beyond wait in the gateway.
        self.max_dispatched = max_dispatched_per_replica or max_inflight_per_replica
        self.dispatch = DeadlineQueue(self.max_dispatched * max(1, len(self.replica_set.replicas)))
        self.hedger = Hedger(hedge_delay_s, self.dispatch, self._attempt)
        self._service_times: dict[str, LatencyWindow] = {}

    @classmethod
    def from_settings(cls, settings) -> "TritonPool":
        """The pool a gateway (or a lone video worker) runs with: GatewaySettings."""
        return cls(settings.triton_urls, settings.hedge_delay_ms / 1000, settings.max_inflight_per_replica,
                   settings.overloaded_retry_after_s, cooldown_s=settings.replica_cooldown_s,
                   gateway_key=settings.triton_key.get_secret_value() if settings.triton_key else None,
                   max_dispatched_per_replica=settings.max_dispatched_per_replica)

    # ---- replicas ---------------------------------------------------------------------
    @property
    def replicas(self) -> list[Replica]:
        return self.replica_set.replicas

    async def refresh(self) -> None:
        await self.replica_set.refresh()

    async def ready(self) -> list[bool]:
        """Readiness of each replica, for the health service (dns:/// URLs resolved again first)."""
        return await self.replica_set.ready()

    async def close(self) -> None:
        await self.replica_set.close()

    # ---- admission --------------------------------------------------------------------
    @property
    def reserved(self) -> int:
        return self.admission.reserved

    @property
    def retry_after_s(self) -> float:
        return self.admission.retry_after_s

    def capacity(self) -> int:
        return self.admission.capacity()

    def reserve(self, calls: int):
        return self.admission.reserve(calls)

    def expected_wait_s(self, calls: int) -> float:
        return self.admission.expected_wait_s(calls)

    def throughput_per_s(self) -> float | None:
        return self.throughput.per_s()

    # ---- hedging counters (metrics) ---------------------------------------------------
    @property
    def hedges_sent(self) -> int:
        return self.hedger.hedges_sent

    @property
    def hedges_won(self) -> int:
        return self.hedger.hedges_won

    @property
    def failovers(self) -> int:
        return self.hedger.failovers

    @property
    def failovers_won(self) -> int:
        return self.hedger.failovers_won

    # ---- dispatch -----------------------------------------------------------------------
    def calls_in_flight(self) -> int:
        """Calls at Triton (attempts) plus those waiting in the gateway's queue for it."""
        return self.replica_set.in_flight() + self.dispatch.waiting()

    def service_time(self, model: str) -> LatencyWindow:
        """Recent Triton answers of `model`, from dispatch (not counting the gateway's queue)."""
        window = self._service_times.get(model)
        if window is None:
            window = self._service_times[model] = LatencyWindow()
        return window

    async def infer(self, model: str, inputs, outputs, deadline: float, service: LatencyWindow | None = None,
                    priority: int = 0):
        """Run one inference: wait in the gateway's queue for a dispatch slot (or be dropped
        there once the deadline cannot be met), then call Triton with hedging and failover.
        `service`: the window that learns this call's Triton time (default: per model).
        priority: Triton's queue level where the model has levels (0: its default).
        Raises FacefuseError subclasses."""
        service = service or self.service_time(model)
        # The dispatch limit follows the live replicas (dns:/// ones come and go).
        self.dispatch.resize(self.max_dispatched * max(1, len(self.replica_set.live())))
        # A call at a lower Triton priority (a video frame) also waits behind photos here.
        async with self.dispatch.slot(deadline, service.typical(), background=priority > PHOTO_PRIORITY):
            started = time.monotonic()
            result = await self._infer_now(model, inputs, outputs, deadline, priority)
            service.add(time.monotonic() - started)  # answers only: a service time
            return result

    async def _infer_now(self, model: str, inputs, outputs, deadline: float, priority: int):
        return await self.hedger.call(self.admission.order(), model, inputs, outputs, deadline, priority)

    async def _attempt(self, replica: Replica, model: str, inputs, outputs, deadline: float, priority: int = 0):
        """One call at one replica. replica.in_flight was counted by the Hedger, in the
        step that chose the replica."""
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
            self.throughput.count()
        except InferenceServerException as exc:
            error = error_from_triton(exc)
            if error.reason not in (Reason.DEADLINE_EXCEEDED, Reason.UNAVAILABLE):
                self.throughput.count()  # a stage's answer (a bad photo): work the replica did
            if error.reason is Reason.UNAVAILABLE:
                self.replica_set.cool(replica)
            raise error from None
        self.replica_set.answered(replica)
        return result
