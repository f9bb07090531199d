"""Recent Triton latencies per model: the least a new call can expect.

`floor`: the fastest recent answer; a deadline shorter than that cannot be met.
`typical`: the median recent answer; the gateway's queue drops a waiting call once its
deadline leaves less than that (facefuse.gateway.dispatch).
Samples older than `horizon_s` are forgotten, so the floor follows the machine.
"""

from __future__ import annotations

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
        recent = sorted(self._recent())
        return recent[len(recent) // 2] if recent else 0.0
