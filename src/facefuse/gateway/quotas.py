"""Per-tenant quotas: a token bucket for the rate and a cap on calls in flight."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from facefuse.gateway.auth import Principal
from facefuse.gateway.errors import RateLimited


@dataclass
class _Bucket:
    rate_per_s: float
    burst: int
    updated: float
    tokens: float = field(init=False)
    in_flight: int = 0

    def __post_init__(self):
        self.tokens = float(self.burst)

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def take(self, now: float) -> float | None:
        """Take one token; None when taken, else seconds until one is available."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate_per_s if self.rate_per_s > 0 else 60.0


class Quotas:
    """Single event loop: no locks needed."""

    def __init__(self, clock=time.monotonic):
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock

    def _bucket(self, principal: Principal) -> _Bucket:
        bucket = self._buckets.get(principal.tenant)
        if bucket is None:
            bucket = self._buckets[principal.tenant] = _Bucket(principal.rate_per_s, principal.burst, self._clock())
        elif (bucket.rate_per_s, bucket.burst) != (principal.rate_per_s, principal.burst):
            # Another credential of the tenant, or new limits: the same bucket takes the
            # caller's limits, keeping its tokens and calls in flight, so switching between
            # credentials neither refills the tenant's tokens nor forgets its calls.
            bucket.refill(self._clock())  # tokens earned so far, at the old rate
            bucket.rate_per_s, bucket.burst = principal.rate_per_s, principal.burst
            bucket.tokens = min(bucket.tokens, float(bucket.burst))
        return bucket

    @contextlib.contextmanager
    def admit(self, principal: Principal):
        """Hold one call's place in the tenant's quota, or raise RateLimited."""
        bucket = self._bucket(principal)
        if bucket.in_flight >= principal.max_concurrency:
            raise RateLimited(
                f"tenant {principal.tenant!r} has {bucket.in_flight} calls in flight (limit {principal.max_concurrency})",
                retry_after_s=0.5,
            )
        wait = bucket.take(self._clock())
        if wait is not None:
            raise RateLimited(
                f"tenant {principal.tenant!r} is over its rate of {principal.rate_per_s:g} calls/s",
                retry_after_s=round(wait, 3),
            )
        bucket.in_flight += 1
        try:
            yield
        finally:
            bucket.in_flight -= 1
