"""The attempts of one Triton call: the first, at most one hedge, failovers.

A call goes to the first replica of its order (the least loaded). If it failed with
UNAVAILABLE, the same request is sent to the next replica (a failover, once no other
attempt of the call is running: never more than two at once). If it is still
unanswered after `hedge_delay_s`, it is sent once more, to the next live replica (one
hedge per call, none when the deadline comes before the hedge delay, none to a cooling
replica, none without a free dispatch slot); the first answer wins and the other
attempt is cancelled. Every attempt gets only what is left of the one deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from facefuse.contract import PHOTO_PRIORITY
from facefuse.errors import FacefuseError, Reason
from facefuse.gateway.dispatch import DeadlineQueue
from facefuse.gateway.errors import Unavailable
from facefuse.gateway.observability import call_event
from facefuse.gateway.replicas import Replica

# (replica, model, inputs, outputs, deadline, priority) -> Triton's result; raises FacefuseError.
Attempt = Callable[[Replica, str, Any, Any, float, int], Awaitable[Any]]


class Hedger:
    """Runs each call's attempts (`attempt` calls one replica once) and counts hedges
    and failovers, sent and won, apart."""

    def __init__(self, hedge_delay_s: float, dispatch: DeadlineQueue, attempt: Attempt):
        self.hedge_delay_s = hedge_delay_s
        self.dispatch = dispatch  # a hedge takes a slot of its own; the call holds one already
        self._attempt = attempt
        self.hedges_sent = 0
        self.hedges_won = 0  # calls answered by their hedge (not by a failover)
        self.failovers = 0  # attempts sent to another replica after UNAVAILABLE
        self.failovers_won = 0  # calls answered by such an attempt

    async def call(self, order: list[Replica], model: str, inputs, outputs, deadline: float, priority: int):
        """The first answer of the attempts on `order` (replicas to try, best first)."""
        attempts: dict[asyncio.Task, tuple[Replica, str]] = {}
        background = priority > PHOTO_PRIORITY

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

        launch(order[0], "first")
        spare = order[1:]
        may_hedge = True  # one hedge per call: with many pods, a slow moment must not fan out to all
        last_error: FacefuseError | None = None
        try:
            while attempts:
                timeout = None
                if may_hedge and _hedge_target(spare) is not None:
                    if deadline - time.monotonic() > self.hedge_delay_s:
                        timeout = self.hedge_delay_s
                    else:  # the deadline comes first: a hedge then could not answer in time
                        may_hedge = False
                done, _ = await asyncio.wait(attempts, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # slow: hedge to the next live replica, unless calls wait for Triton
                    may_hedge = False  # (none later either; a failover reuses its own slot)
                    target = _hedge_target(spare)
                    # A hedge under overload is load, not speed: only with a free dispatch slot.
                    if target is not None and self.dispatch.take_nowait(background=background):
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


def _hedge_target(spare: list[Replica]) -> Replica | None:
    # A cooling replica just refused a call: a spare for failover, not a hedge.
    now = time.monotonic()
    return next((r for r in spare if not r.cooling(now)), None)
