"""Which replica a call tries first: load order, cooling replicas last, shedding."""

from __future__ import annotations

import asyncio
import time

import pytest

from facefuse.gateway.errors import Overloaded
from facefuse.gateway.triton import TritonPool


def order_of(setup) -> list[str]:
    """Run `setup(pool)` then return the urls in the order a call would try them."""
    async def run():
        # Channels are created lazily and never connect: no server is needed.
        pool = TritonPool(["a:1", "b:1", "c:1"], hedge_delay_s=1.0, max_inflight_per_replica=2, cooldown_s=30.0)
        try:
            setup(pool)
            return [r.url for r in pool.admission.order()]
        finally:
            await pool.close()

    return asyncio.run(run())


def test_the_least_loaded_replica_goes_first():
    def setup(pool):
        pool.replicas[0].in_flight, pool.replicas[1].in_flight = 1, 0

    assert order_of(setup) == ["b:1", "c:1", "a:1"]


def test_a_cooling_replica_is_only_a_spare_behind_the_live_ones():
    def setup(pool):
        pool.replicas[0].cooling_until = time.monotonic() + 30
        pool.replicas[1].in_flight = 1

    assert order_of(setup) == ["c:1", "b:1", "a:1"]


def test_when_every_replica_is_cooling_all_are_tried_by_load():
    def setup(pool):
        for replica in pool.replicas:
            replica.cooling_until = time.monotonic() + 30
        pool.replicas[2].in_flight = 1

    assert order_of(setup) == ["a:1", "b:1", "c:1"]


def test_full_live_replicas_shed_even_when_a_cooling_one_is_idle():
    def setup(pool):
        pool.replicas[0].cooling_until = time.monotonic() + 30
        pool.replicas[1].in_flight = pool.replicas[2].in_flight = 2

    with pytest.raises(Overloaded) as error:
        order_of(setup)
    assert error.value.retry_after_s > 0


def test_a_cooling_period_that_has_passed_makes_the_replica_live_again():
    def setup(pool):
        pool.replicas[0].cooling_until = time.monotonic() - 1
        pool.replicas[1].in_flight = pool.replicas[2].in_flight = 1

    assert order_of(setup) == ["a:1", "b:1", "c:1"]
