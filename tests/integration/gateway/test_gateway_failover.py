"""Losing a replica (issue 21, item 6): two real tritonservers behind one real gateway.

- Under steady load from a few SDK callers one replica's tritonserver is killed with
  SIGKILL: every call still ends in a poster (the gateway fails over; anything it
  answers UNAVAILABLE the SDK's declared retry completes), and once the replica is
  started again on the same ports its own statistics show traffic back on it.
- A slow replica gets its calls hedged to the other one, and the hedge wins.
- Metrics (Prometheus text from the gateway's endpoint) and the gateway's span events
  (OTLP/HTTP into a receiver in this process) tell failovers and hedges apart.

The slow replica is a real Triton behind `DelayingProxy`, a gRPC pass-through in this
test that holds inference calls: nothing in the server, the models or the gateway
knows it is being tested, health and statistics still answer at once, and the delay
can be switched on for one test without restarting anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from facefuse_client import FacefuseClient, RetryableError
from gateway_helpers import TEMPLATE, running_gateway, successes, target, wait_until
from otlp_receiver import OtlpReceiver, events_named
from prometheus_client.parser import text_string_to_metric_families

from facefuse.server.triton import embedded_triton, free_port

FUSION = "face_fusion"  # the ensemble a one-photo Fuse calls (releases_file=None: no release routing)
CALLERS = 3  # steady but small: two Tritons and the callers share the machine's cores
MAX_CALLS_PER_CALLER = 500  # a bound on each loop, should a wait below never end (about 60 are made here)
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
MESSAGE_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]


# ---- a slow replica ------------------------------------------------------------------
class DelayingProxy:
    """A gRPC pass-through to one replica that holds each inference call for
    `infer_delay_s` before forwarding it; every other call (readiness, statistics)
    passes at once. A held call the gateway cancels (its hedge won) is never forwarded."""

    def __init__(self, upstream: str):
        self.infer_delay_s = 0.0
        self.inferences = 0  # inference calls received
        self.held = 0  # of those, held
        self.forwarded_after_hold = 0
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(upstream, options=MESSAGE_OPTIONS)
        proxy = self

        class PassThrough(grpc.GenericRpcHandler):
            def service(self, details):
                return grpc.unary_unary_rpc_method_handler(proxy._handler(details.method))  # bytes in, bytes out

        self._server = grpc.server(ThreadPoolExecutor(max_workers=16), handlers=[PassThrough()],
                                   options=MESSAGE_OPTIONS)
        self.url = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def _handler(self, method: str):
        forward = self._channel.unary_unary(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if method == INFER_METHOD:
                with self._lock:
                    self.inferences += 1
            if method == INFER_METHOD and self.infer_delay_s > 0:
                with self._lock:
                    self.held += 1
                ended = threading.Event()
                context.add_callback(ended.set)  # cancelled by the gateway: stop holding
                ended.wait(self.infer_delay_s)
                if not context.is_active():
                    return b""
                with self._lock:
                    self.forwarded_after_hold += 1
            # The gateway key and the trace context travel on; gRPC's own headers do not.
            metadata = [(k, v) for k, v in context.invocation_metadata()
                        if not k.startswith(("grpc-", ":")) and k != "user-agent"]
            try:
                return forward(request, metadata=metadata, timeout=context.time_remaining())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())

        return handle

    def close(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()


# ---- a replica that can be crashed and started again -------------------------------
class RestartableReplica:
    """A tritonserver on fixed ports: `crash()` is `kill -9` of tritonserver itself,
    `restart()` starts a new one on the same ports, so the gateway keeps its URL."""

    def __init__(self, settings):
        self.settings = settings
        self._stack = contextlib.ExitStack()
        self.server = self._stack.enter_context(embedded_triton(settings))
        self.ports = (self.server.grpc_port, self.server.http_port, self.server.metrics_port)
        self.url = self.server.grpc_url

    def crash(self) -> None:
        pid = self.server.process.pid
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "tritonserver", "the process to kill is tritonserver"
        os.kill(pid, signal.SIGKILL)
        self.server.process.wait()
        self.server.reap()  # its backend stubs and shared memory, as every stop after a crash

    def restart(self) -> None:
        self.server = self._stack.enter_context(embedded_triton(self.settings, ports=self.ports))
        assert self.server.grpc_url == self.url

    def close(self) -> None:
        self._stack.close()


# ---- what the gateway reports -------------------------------------------------------
def scrape(gateway) -> dict[str, dict[tuple, float]]:
    """The gateway's Prometheus text, as {sample name: {label values: value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def counter(samples, name: str) -> float:
    return samples[name][()]


def replica_gauge(gateway, what: str, url: str) -> float:
    """facefuse_gateway_replica_<what>{replica=url}, scraped now."""
    return scrape(gateway)[f"facefuse_gateway_replica_{what}"][(("replica", url),)]


def fuse_reasons(samples) -> dict[str, float]:
    """Finished Fuse calls by reason (none until the gateway has ended a call: a labelled counter
    has no sample before its first increment, and the caller may give up before the gateway ends it)."""
    return {dict(labels)["reason"]: value for labels, value in samples.get("facefuse_gateway_calls_total", {}).items()
            if dict(labels)["rpc"] == "Fuse"}


def poll(condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    """wait_until for conditions that cost a call to Triton each time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


class Callers:
    """A few SDK callers fusing one after another until stopped; every outcome is kept."""

    def __init__(self, gateway, api_key: str, photo: bytes, count: int = CALLERS):
        self.posters: list[bytes] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(target(gateway), api_key, photo), daemon=True)
                         for _ in range(count)]

    def _run(self, address: str, api_key: str, photo: bytes) -> None:
        with FacefuseClient(address, api_key=api_key) as sdk:
            for _ in range(MAX_CALLS_PER_CALLER):
                if self._stop.is_set():
                    return
                try:
                    image = sdk.fuse(photo, TEMPLATE, timeout_s=60).image
                except Exception as error:  # noqa: BLE001 - every failure is the test's finding
                    with self._lock:
                        self.errors.append(error)
                else:
                    with self._lock:
                        self.posters.append(image)

    def answered(self) -> int:
        with self._lock:
            return len(self.posters) + len(self.errors)

    def __enter__(self) -> "Callers":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


@contextlib.contextmanager
def proxies(upstream: str, *infer_delays_s: float):
    """One DelayingProxy per delay, each in front of `upstream`."""
    made = [DelayingProxy(upstream) for _ in infer_delays_s]
    try:
        for proxy, delay_s in zip(made, infer_delays_s):
            proxy.infer_delay_s = delay_s
        yield made
    finally:
        for proxy in made:
            proxy.close()


# ---- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def second_replica(settings, triton):
    """Beside the session's Triton (never stopped), a second replica this module may crash."""
    replica = RestartableReplica(settings)
    try:
        yield replica
    finally:
        replica.close()


def observed_gateway(credentials, urls: list[str], receiver: OtlpReceiver, service: str, **settings):
    """The real gateway, tracing every call to `receiver` under its own service name."""
    return running_gateway(credentials, urls, releases_file=None, otlp_traces_url=receiver.url,
                           trace_service_name=service, trace_sample_ratio=1.0, **settings)


# ---- tests ----------------------------------------------------------------------------
@pytest.mark.slow
def test_every_call_succeeds_when_a_replica_is_killed_under_load_and_traffic_returns_after_its_restart(
        triton, second_replica, credentials, astronaut, receiver):
    service = "gateway-losing-a-replica"
    # No hedges here (a hedge is the next test's subject): whatever reaches the live
    # replica after the kill is a failover. A short cooldown makes the dead replica
    # take a first attempt again now and then while it is down, as it would in a
    # longer outage, so failovers keep happening until it is back.
    with observed_gateway(credentials, [second_replica.url, triton.grpc_url], receiver, service,
                          hedge_delay_ms=60_000, replica_cooldown_s=1.0) as gateway:
        pool = gateway.service.triton
        doomed = next(r for r in pool.replicas if r.url == second_replica.url)
        with Callers(gateway, credentials.full_key, astronaut) as callers:
            # Killed with a call of its own in flight: that call must fail over too.
            wait_until(lambda: callers.answered() >= CALLERS and doomed.in_flight > 0, timeout_s=120,
                       what="calls on both replicas")
            second_replica.crash()
            poll(lambda: pool.failovers_won >= 2, timeout_s=120, what="calls answered after a failover")
            poll(lambda: replica_gauge(gateway, "ready", second_replica.url) == 0, timeout_s=30,
                 what="the gateway to see the killed replica not ready")
            second_replica.restart()
            # Fresh statistics: every success counted here was served after the restart.
            poll(lambda: successes(second_replica.url, FUSION) >= 3, timeout_s=120,
                 what="calls served by the restarted replica")
            poll(lambda: replica_gauge(gateway, "ready", second_replica.url) == 1, timeout_s=30,
                 what="the gateway to see the restarted replica ready")
        metrics = scrape(gateway)
        failovers_won = pool.failovers_won
    assert callers.errors == [], f"{len(callers.errors)} calls failed, first: {callers.errors[0]!r}"
    assert callers.posters and all(image[:2] == b"\xff\xd8" for image in callers.posters)

    fuse_calls = fuse_reasons(metrics)
    # The gateway's own count of successes is the callers' (a call the gateway answered
    # UNAVAILABLE, if any, is one the SDK's declared retry then completed).
    assert fuse_calls.pop("OK") == len(callers.posters)
    assert set(fuse_calls) <= {"UNAVAILABLE"}
    failovers_sent = counter(metrics, "facefuse_gateway_retries_total")
    assert failovers_sent >= counter(metrics, "facefuse_gateway_failovers_won_total") == failovers_won >= 2
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 0
    assert counter(metrics, "facefuse_gateway_hedges_won_total") == 0  # failovers are not hedges

    spans = receiver.of(service)  # the gateway flushed its spans when it stopped
    failed_over = [s for s in spans if any(e["why"] == "failover" for e in events_named(s, "triton.answered"))]
    assert len(failed_over) == failovers_won
    for span in failed_over:
        assert span["attributes"]["facefuse.reason"] == "OK"
        assert [e["replica"] for e in events_named(span, "triton.unavailable")] == [second_replica.url]
        assert [(e["why"], e["replica"]) for e in events_named(span, "triton.attempt")] == \
            [("first", second_replica.url), ("failover", triton.grpc_url)]
        assert [e["replica"] for e in events_named(span, "triton.answered")] == [triton.grpc_url]


@pytest.mark.slow
def test_a_hedge_fires_and_wins_when_one_replica_is_slow(triton, second_replica, credentials, astronaut, receiver):
    service = "gateway-slow-replica"
    proxy = DelayingProxy(triton.grpc_url)
    try:
        # The slow replica is listed first, so an idle gateway gives it the first attempt.
        with observed_gateway(credentials, [proxy.url, second_replica.url], receiver, service,
                              hedge_delay_ms=300) as gateway, \
                FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
            pool = gateway.service.triton
            slow_before = successes(triton.grpc_url, FUSION)
            fast_before = successes(second_replica.url, FUSION)
            proxy.infer_delay_s = 60.0  # far beyond an answer: the hedge's answer comes first
            posters = [sdk.fuse(astronaut, TEMPLATE, timeout_s=60) for _ in range(2)]
            metrics = scrape(gateway)
            hedges_won = pool.hedges_won
        slow_after = successes(triton.grpc_url, FUSION)
        fast_after = successes(second_replica.url, FUSION)
    finally:
        proxy.close()
    assert all(p.image[:2] == b"\xff\xd8" for p in posters)
    assert proxy.held == 2 and proxy.forwarded_after_hold == 0  # each slow attempt was cancelled, not awaited
    assert fast_after - fast_before == 2 and slow_after == slow_before

    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 2
    assert counter(metrics, "facefuse_gateway_hedges_won_total") == hedges_won == 2
    assert counter(metrics, "facefuse_gateway_retries_total") == 0
    assert counter(metrics, "facefuse_gateway_failovers_won_total") == 0

    fuse_spans = [s for s in receiver.of(service) if s["name"].endswith("/Fuse")]
    assert len(fuse_spans) == 2
    for span in fuse_spans:
        assert [(e["why"], e["replica"]) for e in events_named(span, "triton.attempt")] == \
            [("first", proxy.url), ("hedge", second_replica.url)]
        assert events_named(span, "triton.answered") == [
            {"model": FUSION, "replica": second_replica.url, "why": "hedge"}]
        assert events_named(span, "triton.unavailable") == []


def test_a_call_answered_after_a_failover_counts_as_a_failover_won_not_a_hedge_won(triton, credentials, astronaut):
    down = f"127.0.0.1:{free_port()}"  # a replica that is down: nothing listens there
    with running_gateway(credentials, [down, triton.grpc_url], releases_file=None, hedge_delay_ms=60_000) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        assert sdk.fuse(astronaut, TEMPLATE, timeout_s=60).image[:2] == b"\xff\xd8"
        metrics = scrape(gateway)
    assert counter(metrics, "facefuse_gateway_retries_total") == 1
    assert counter(metrics, "facefuse_gateway_failovers_won_total") == 1
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 0
    assert counter(metrics, "facefuse_gateway_hedges_won_total") == 0


# ---- when not to hedge ------------------------------------------------------------------
def test_a_slow_call_is_hedged_once_not_to_every_replica(triton, credentials, astronaut):
    """One hedge per call: a third replica is not sent the same request as well (with
    many pods a slow moment would otherwise multiply the load by the number of pods)."""
    with proxies(triton.grpc_url, 2.0, 2.0, 0.0) as (slow, also_slow, fast), \
            running_gateway(credentials, [slow.url, also_slow.url, fast.url], releases_file=None,
                            hedge_delay_ms=300) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        assert sdk.fuse(astronaut, TEMPLATE, timeout_s=60).image[:2] == b"\xff\xd8"
        metrics = scrape(gateway)
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 1
    assert (slow.inferences, also_slow.inferences, fast.inferences) == (1, 1, 0)


def test_a_call_whose_deadline_comes_before_the_hedge_delay_is_not_hedged(triton, credentials, astronaut):
    with proxies(triton.grpc_url, 60.0, 0.0) as (slow, fast), \
            running_gateway(credentials, [slow.url, fast.url], releases_file=None, hedge_delay_ms=5_000) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        with pytest.raises(RetryableError) as info:
            sdk.fuse(astronaut, TEMPLATE, timeout_s=1.0)
        wait_until(lambda: "DEADLINE_EXCEEDED" in fuse_reasons(scrape(gateway)), what="the gateway to end the call")
        metrics = scrape(gateway)
    assert info.value.reason == "DEADLINE_EXCEEDED"
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 0
    assert fast.inferences == 0


def test_a_replica_cooling_down_after_unavailable_takes_failovers_but_no_hedges(triton, credentials, astronaut):
    """A replica that just refused a call is a spare for failover only: a slow call is
    not hedged to it, where the hedge would most likely be refused as well."""
    down = f"127.0.0.1:{free_port()}"
    with proxies(triton.grpc_url, 1.0) as (slow,), \
            running_gateway(credentials, [down, slow.url], releases_file=None, hedge_delay_ms=300,
                            replica_cooldown_s=300) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        first = sdk.fuse(astronaut, TEMPLATE, timeout_s=60)  # tries the down replica first, fails over
        second = sdk.fuse(astronaut, TEMPLATE, timeout_s=60)  # slow, with only a cooling replica beside it
        metrics = scrape(gateway)
        attempts_on_down = next(r for r in gateway.service.triton.replicas if r.url == down).attempts
    assert first.image[:2] == second.image[:2] == b"\xff\xd8"
    assert counter(metrics, "facefuse_gateway_retries_total") == 1
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 0
    assert attempts_on_down == 1


def test_a_hedge_refused_as_unavailable_starts_no_third_attempt_while_the_first_still_runs(triton, credentials,
                                                                                           astronaut):
    """At most two attempts at once: the failed hedge's replica is down, but the first
    attempt is still running, so no further replica is sent the call."""
    down = f"127.0.0.1:{free_port()}"
    with proxies(triton.grpc_url, 1.0, 0.0) as (slow, fast), \
            running_gateway(credentials, [slow.url, down, fast.url], releases_file=None,
                            hedge_delay_ms=300) as gateway, \
            FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        assert sdk.fuse(astronaut, TEMPLATE, timeout_s=60).image[:2] == b"\xff\xd8"
        metrics = scrape(gateway)
    assert counter(metrics, "facefuse_gateway_hedges_sent_total") == 1  # to the down replica
    assert counter(metrics, "facefuse_gateway_retries_total") == 0
    assert (slow.inferences, fast.inferences) == (1, 0)
