"""The gateway's queue in front of Triton: few calls at Triton, the rest wait here.

Under overload, calls sent straight to Triton queue inside it, behind each other in every
stage; one admitted when the queue looked short can still miss its deadline, and Triton
computes it anyway (its per-stage queue timeout restarts at each stage of an ensemble).
That work is lost goodput. Here at most `limit` calls are at Triton at once (enough to
keep its instances busy), and the others wait in arrival order. A waiting call is
dropped with DEADLINE_EXCEEDED as soon as its deadline no longer leaves the time Triton
typically takes to answer it: Triton never sees a call that would come back too late.
Background calls (video frames) wait behind every interactive call (photos): a freed
slot goes to the longest-waiting photo call first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from facefuse.gateway.errors import DeadlineExceeded


class DeadlineQueue:
    """Single event loop: no locks needed. `active` counts calls holding a slot."""

    def __init__(self, limit: int, clock=time.monotonic):
        if limit < 1:
            raise ValueError("the dispatch limit must be at least 1")
        self.limit = limit
        self.active = 0
        self.dropped = 0  # calls dropped while waiting: their deadline could no longer be met
        # Handed slots in this order: interactive waiters first, then background ones.
        self._waiters: deque[asyncio.Future] = deque()
        self._background_waiters: deque[asyncio.Future] = deque()
        self._clock = clock

    def waiting(self) -> int:
        return sum(not w.done() for w in (*self._waiters, *self._background_waiters))

    def has_room(self, background: bool = False) -> bool:
        """A slot is free and nobody this call may not overtake waits for one."""
        ahead = self.waiting() if background else sum(not w.done() for w in self._waiters)
        return self.active < self.limit and not ahead

    def take_nowait(self, background: bool = False) -> bool:
        """Take a free slot without waiting (hedges: only when Triton has room to spare)."""
        if not self.has_room(background):
            return False
        self.active += 1
        return True

    async def acquire(self, deadline: float, service_s: float, background: bool = False) -> None:
        """Wait for a slot; DeadlineExceeded once `deadline` (monotonic) no longer leaves
        `service_s`, the time Triton typically takes for this call. A background call
        waits behind every interactive one."""
        if self.take_nowait(background):
            return
        budget = deadline - self._clock() - service_s
        if budget <= 0:
            self.dropped += 1
            raise DeadlineExceeded(self._too_late(deadline, service_s))
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def drop() -> None:
            if not waiter.done():
                self.dropped += 1
                waiter.set_exception(DeadlineExceeded(self._too_late(deadline, service_s)))

        timer = loop.call_later(budget, drop)
        (self._background_waiters if background else self._waiters).append(waiter)
        try:
            await waiter  # a result: release() handed this call its slot
        except asyncio.CancelledError:
            # Cancelled after the slot was handed over but before running: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        """Give the slot to the longest-waiting call still waiting, else free it."""
        if self.active <= self.limit and self._hand_over():
            return  # the slot changed hands: `active` stays
        self.active -= 1

    def resize(self, limit: int) -> None:
        """A new limit (replicas came or went); more room lets waiting calls go now."""
        self.limit = max(1, limit)
        while self.active < self.limit and self._hand_over():
            self.active += 1

    def _hand_over(self) -> bool:
        for waiters in (self._waiters, self._background_waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return True
        return False

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float, service_s: float, background: bool = False):
        await self.acquire(deadline, service_s, background)
        try:
            yield
        finally:
            self.release()

    def _too_late(self, deadline: float, service_s: float) -> str:
        left = max(0.0, deadline - self._clock())
        return (f"dropped before Triton: the deadline leaves {left * 1000:.0f} ms and Triton typically takes "
                f"{service_s * 1000:.0f} ms; try again shortly or with a longer deadline")
