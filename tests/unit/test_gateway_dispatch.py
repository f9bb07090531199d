"""The gateway's queue in front of Triton (facefuse.gateway.dispatch) and its use by the
pool: few calls at Triton, the rest wait in order, and a call that can no longer meet
its deadline is dropped before Triton sees it. Pure asyncio; Triton is a stub."""

from __future__ import annotations

import asyncio
import time

import pytest

from facefuse.gateway.dispatch import DeadlineQueue
from facefuse.gateway.errors import DeadlineExceeded
from facefuse.gateway.latency import LatencyWindow
from facefuse.gateway.triton import TritonPool


def test_at_most_limit_calls_hold_a_slot_and_the_others_go_in_arrival_order():
    async def run():
        queue = DeadlineQueue(limit=2)
        far = time.monotonic() + 60
        order, inside, peak = [], 0, 0
        gates = [asyncio.Event() for _ in range(6)]

        async def call(i: int):
            nonlocal inside, peak
            async with queue.slot(far, service_s=0.0):
                order.append(i)
                inside += 1
                peak = max(peak, inside)
                await gates[i].wait()
                inside -= 1

        tasks = [asyncio.ensure_future(call(i)) for i in range(6)]
        await asyncio.sleep(0)
        assert queue.active == 2 and queue.waiting() == 4 and not queue.has_room()
        for gate in gates:
            gate.set()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return order, peak, queue.active

    order, peak, active = asyncio.run(run())
    assert order == [0, 1, 2, 3, 4, 5] and peak == 2 and active == 0


def test_a_waiting_call_is_dropped_once_its_deadline_leaves_less_than_tritons_time():
    async def run():
        queue = DeadlineQueue(limit=1)
        release_first = asyncio.Event()
        reached_triton = []

        async def call(name: str, deadline: float, service_s: float):
            async with queue.slot(deadline, service_s):
                reached_triton.append(name)
                if name == "first":
                    await release_first.wait()

        now = time.monotonic()
        first = asyncio.ensure_future(call("first", now + 60, 0.0))
        await asyncio.sleep(0)
        # 0.3 s left, Triton takes 0.25 s: it may wait 0.05 s for the slot, then it is dropped.
        doomed = asyncio.ensure_future(call("doomed", now + 0.3, 0.25))
        patient = asyncio.ensure_future(call("patient", now + 60, 0.25))
        with pytest.raises(DeadlineExceeded, match="dropped before Triton"):
            await doomed
        release_first.set()
        await asyncio.gather(first, patient)
        # Already too late on arrival with no free slot: dropped at once, without waiting.
        holder = asyncio.ensure_future(queue.acquire(now + 60, 0.0))
        await holder
        with pytest.raises(DeadlineExceeded):
            await queue.acquire(time.monotonic() + 0.1, 0.5)
        queue.release()
        return reached_triton, queue.dropped, queue.active

    reached, dropped, active = asyncio.run(run())
    assert reached == ["first", "patient"]  # the dropped call never reached Triton
    assert dropped == 2 and active == 0


def test_a_call_cancelled_after_it_was_handed_a_slot_passes_the_slot_on():
    async def run():
        queue = DeadlineQueue(limit=1)
        far = time.monotonic() + 60
        await queue.acquire(far, 0.0)
        cancelled = asyncio.ensure_future(queue.acquire(far, 0.0))
        after = asyncio.ensure_future(queue.acquire(far, 0.0))
        await asyncio.sleep(0)
        queue.release()  # hands the slot to `cancelled`, which is cancelled before it runs
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        await asyncio.wait_for(after, 5)  # got the slot instead of it being lost
        queue.release()
        return queue.active

    assert asyncio.run(run()) == 0


def test_hedges_take_a_slot_only_when_nobody_waits_and_a_bigger_limit_lets_waiters_go():
    async def run():
        queue = DeadlineQueue(limit=1)
        far = time.monotonic() + 60
        assert queue.take_nowait()
        waiter = asyncio.ensure_future(queue.acquire(far, 0.0))
        await asyncio.sleep(0)
        assert not queue.take_nowait()  # a call waits: no hedge adds load now
        queue.resize(2)  # a replica came back
        await asyncio.wait_for(waiter, 5)
        return queue.active

    assert asyncio.run(run()) == 2


def test_the_pool_sends_at_most_its_dispatch_limit_and_drops_calls_that_would_come_back_late(monkeypatch):
    async def run():
        pool = TritonPool(["a:1"], hedge_delay_s=60.0, max_inflight_per_replica=64, max_dispatched_per_replica=2)
        at_triton, peak, answered = 0, 0, []

        async def triton(model, inputs, outputs, deadline, priority):
            nonlocal at_triton, peak
            at_triton += 1
            peak = max(peak, at_triton)
            await asyncio.sleep(0.05)
            at_triton -= 1
            return inputs

        monkeypatch.setattr(pool, "_infer_now", triton)
        service = LatencyWindow()
        service.add(0.05)  # Triton's typical answer time, learnt earlier
        try:
            now = time.monotonic()
            # 12 calls of 0.05 s, two at a time: 0.3 s of work. Deadlines of 0.12 s leave
            # room for the first few only; the rest are dropped, never sent.
            results = await asyncio.gather(
                *(pool.infer("face_fusion", i, None, now + 0.12, service=service) for i in range(12)),
                return_exceptions=True)
        finally:
            await pool.close()
        answered = [r for r in results if not isinstance(r, BaseException)]
        dropped = [r for r in results if isinstance(r, DeadlineExceeded)]
        return peak, answered, dropped, pool.dispatch.dropped, service.typical()

    peak, answered, dropped, counted, typical = asyncio.run(run())
    assert peak <= 2
    assert answered and dropped and len(answered) + len(dropped) == 12
    assert counted == len(dropped)
    assert answered == sorted(answered)  # first come, first served
    assert typical >= 0.05  # the window learnt Triton's time, from dispatch


def test_the_typical_latency_is_the_median_of_recent_answers():
    now = [0.0]
    window = LatencyWindow(size=8, horizon_s=10, clock=lambda: now[0])
    assert window.typical() == 0  # nothing known: nothing is dropped for it
    for latency in (0.2, 0.3, 2.0, 0.25, 3.0):
        window.add(latency)
    assert window.typical() == 0.3
    now[0] = 11.0
    assert window.typical() == 0


def test_a_freed_slot_goes_to_a_waiting_photo_call_before_an_earlier_video_frame():
    async def run():
        queue = DeadlineQueue(limit=1)
        far = time.monotonic() + 60
        order = []
        release_first = asyncio.Event()

        async def call(name: str, background: bool):
            async with queue.slot(far, 0.0, background=background):
                order.append(name)
                if name == "first":
                    await release_first.wait()

        first = asyncio.ensure_future(call("first", False))
        await asyncio.sleep(0)
        frame = asyncio.ensure_future(call("frame", True))
        await asyncio.sleep(0)
        photo = asyncio.ensure_future(call("photo", False))
        await asyncio.sleep(0)
        # A photo arriving while only frames wait still may not take a slot nobody frees.
        assert queue.waiting() == 2 and not queue.has_room() and not queue.take_nowait(background=True)
        release_first.set()
        await asyncio.gather(first, frame, photo)
        return order, queue.active

    order, active = asyncio.run(run())
    assert order == ["first", "photo", "frame"] and active == 0
