"""Load shapes as plain functions of time: users wanted at second t, or None when done.

`loadtest/locustfile.py` wraps the chosen one in a Locust LoadTestShape.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("ramp", "steady", "spike")


@dataclass(frozen=True)
class ShapeParams:
    max_users: int = 8
    step_s: float = 10.0  # ramp: seconds per step
    duration_s: float = 30.0  # steady and spike: total length
    spike_factor: float = 4.0  # spike: users at the spike / base users
    spike_s: float = 8.0  # spike: how long the spike lasts


def ramp_levels(max_users: int) -> list[int]:
    """1, 2, 4, ... up to max_users (which is always the last level)."""
    levels, users = [], 1
    while users < max_users:
        levels.append(users)
        users *= 2
    return levels + [max_users]


def users_at(shape: str, t: float, p: ShapeParams) -> int | None:
    if shape == "ramp":
        levels = ramp_levels(p.max_users)
        step = int(t // p.step_s)
        return levels[step] if step < len(levels) else None
    if shape == "steady":
        return p.max_users if t < p.duration_s else None
    if shape == "spike":
        if t >= p.duration_s:
            return None
        base = max(1, round(p.max_users / p.spike_factor))
        spike_start = (p.duration_s - p.spike_s) / 2
        return p.max_users if spike_start <= t < spike_start + p.spike_s else base
    raise ValueError(f"unknown load shape {shape!r}; use one of {', '.join(SHAPES)}")
