"""Recent Triton latencies per model: what a new call can expect, before it is admitted.

`floor`: the fastest recent answer; a deadline shorter than that cannot be met.
`typical`: the median of recent calls, counting calls that ran out of time at the time
they took (survivors alone would always look fast enough); a deadline shorter than
that would most likely be missed while the queues are this long. Samples older than
`horizon_s` are forgotten, so once refusals have drained the queues (no new samples),
calls are admitted again and the estimate starts afresh.
"""

from __future__ import annotations

import statistics
import time
from collections import deque


class LatencyWindow:
    def __init__(self, size: int = 32, horizon_s: float = 10.0, clock=time.monotonic):
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)
        self.horizon_s = horizon_s
        self._clock = clock

    def add(self, latency_s: float) -> None:
        self._samples.append((self._clock(), latency_s))

    def _recent(self) -> list[float]:
        oldest = self._clock() - self.horizon_s
        while self._samples and self._samples[0][0] < oldest:
            self._samples.popleft()
        return [latency for _, latency in self._samples]

    def floor(self) -> float:
        recent = self._recent()
        return min(recent) if recent else 0.0

    def typical(self) -> float:
        recent = self._recent()
        return statistics.median(recent) if len(recent) >= 4 else 0.0
