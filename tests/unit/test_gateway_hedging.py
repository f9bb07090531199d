"""A call's attempts at Triton (facefuse.gateway.hedging.Hedger) with stub replicas:
one hedge per call, failovers counted apart, no hedge to a cooling replica or past the
deadline, never a third attempt while two run. Pure asyncio; no server."""

from __future__ import annotations

import asyncio
import time

import pytest

from facefuse.gateway.dispatch import DeadlineQueue
from facefuse.gateway.errors import DeadlineExceeded, Unavailable
from facefuse.gateway.hedging import Hedger
from facefuse.gateway.replicas import Replica

HEDGE_DELAY_S = 0.05


def run_call(behaviour: dict[str, tuple[float, str]], cooling: tuple[str, ...] = (), deadline_s: float = 5.0,
             dispatch_limit: int = 4):
    """behaviour: url -> (seconds before it ends, "ok" | "unavailable" | "deadline"), in
    the order the call tries them. Returns (answer or error, urls attempted, hedger, peak
    attempts at once)."""
    async def run():
        replicas = [Replica(url, client=None) for url in behaviour]
        for replica in replicas:
            if replica.url in cooling:
                replica.cooling_until = time.monotonic() + 60
        attempted, running, peak = [], 0, 0

        async def attempt(replica, model, inputs, outputs, deadline, priority):
            nonlocal running, peak
            attempted.append(replica.url)
            running += 1
            peak = max(peak, running)
            try:
                delay_s, outcome = behaviour[replica.url]
                await asyncio.sleep(delay_s)
                if outcome == "unavailable":
                    raise Unavailable(f"{replica.url} is down")
                if outcome == "deadline":
                    raise DeadlineExceeded("too late")
                return replica.url
            finally:
                running -= 1

        dispatch = DeadlineQueue(dispatch_limit)
        hedger = Hedger(HEDGE_DELAY_S, dispatch, attempt)
        await dispatch.acquire(time.monotonic() + 60, 0.0)  # the call's own slot, as TritonPool.infer holds it
        try:
            outcome = await hedger.call(replicas, "face_fusion", None, None, time.monotonic() + deadline_s, 0)
        except Exception as exc:  # noqa: BLE001 - the test looks at which error
            outcome = exc
        await asyncio.sleep(0.01)  # cancelled attempts end and run their done callbacks
        dispatch.release()
        assert all(r.in_flight == 0 for r in replicas) and dispatch.active == 0
        return outcome, attempted, hedger, peak

    return asyncio.run(run())


def test_a_slow_call_is_hedged_once_and_the_hedge_wins():
    answer, attempted, hedger, _ = run_call({"a": (0.5, "ok"), "b": (0.2, "ok"), "c": (0.0, "ok")})
    assert (answer, attempted) == ("b", ["a", "b"])  # one hedge, not one to every replica
    assert (hedger.hedges_sent, hedger.hedges_won, hedger.failovers, hedger.failovers_won) == (1, 1, 0, 0)


def test_an_answer_after_a_failover_counts_as_a_failover_won_not_a_hedge_won():
    answer, attempted, hedger, _ = run_call({"a": (0.0, "unavailable"), "b": (0.0, "ok")})
    assert (answer, attempted) == ("b", ["a", "b"])
    assert (hedger.hedges_sent, hedger.hedges_won, hedger.failovers, hedger.failovers_won) == (0, 0, 1, 1)


def test_a_cooling_replica_takes_a_failover_but_no_hedge():
    answer, attempted, hedger, _ = run_call({"a": (0.2, "ok"), "b": (0.0, "ok")}, cooling=("b",))
    assert (answer, attempted, hedger.hedges_sent) == ("a", ["a"], 0)
    answer, attempted, hedger, _ = run_call({"a": (0.0, "unavailable"), "b": (0.0, "ok")}, cooling=("b",))
    assert (answer, attempted, hedger.failovers_won) == ("b", ["a", "b"], 1)


def test_a_call_whose_deadline_comes_before_the_hedge_delay_is_not_hedged():
    answer, attempted, hedger, _ = run_call({"a": (0.1, "ok"), "b": (0.0, "ok")}, deadline_s=HEDGE_DELAY_S / 2)
    assert (answer, attempted, hedger.hedges_sent) == ("a", ["a"], 0)


def test_no_hedge_without_a_free_dispatch_slot():
    answer, attempted, hedger, _ = run_call({"a": (0.2, "ok"), "b": (0.0, "ok")}, dispatch_limit=1)
    assert (answer, attempted, hedger.hedges_sent) == ("a", ["a"], 0)


def test_a_hedge_refused_as_unavailable_starts_no_third_attempt_while_the_first_still_runs():
    answer, attempted, hedger, peak = run_call({"a": (0.3, "ok"), "b": (0.0, "unavailable"), "c": (0.0, "ok")})
    assert (answer, attempted, peak) == ("a", ["a", "b"], 2)
    assert (hedger.hedges_sent, hedger.hedges_won, hedger.failovers) == (1, 0, 0)


def test_an_error_that_is_the_answer_ends_the_call_without_a_failover():
    error, attempted, hedger, _ = run_call({"a": (0.0, "deadline"), "b": (0.0, "ok")})
    assert isinstance(error, DeadlineExceeded) and attempted == ["a"] and hedger.failovers == 0


def test_every_replica_unavailable_ends_in_unavailable():
    error, attempted, _, _ = run_call({"a": (0.0, "unavailable"), "b": (0.0, "unavailable")})
    assert isinstance(error, Unavailable) and attempted == ["a", "b"]


@pytest.mark.parametrize("first_delay_s", [0.0, 0.2])
def test_a_lone_replica_is_never_hedged(first_delay_s):
    answer, attempted, hedger, _ = run_call({"a": (first_delay_s, "ok")})
    assert (answer, attempted, hedger.hedges_sent) == ("a", ["a"], 0)
