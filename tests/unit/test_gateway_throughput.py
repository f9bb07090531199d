"""The answer rate admission estimates waits from (facefuse.gateway.triton.Throughput), on a
clock the test moves."""

from __future__ import annotations

import pytest

from facefuse.gateway import triton
from facefuse.gateway.triton import Throughput


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(triton.time, "monotonic", lambda: now[0])
    return now


def answer(throughput: Throughput, clock, count: int, every_s: float) -> None:
    for _ in range(count):
        clock[0] += every_s
        throughput.count()


def test_a_steady_rate_is_read_over_the_window(clock):
    throughput = Throughput(window_s=3.0, min_calls=3)
    answer(throughput, clock, 300, 0.05)  # 20 answers a second for 15 s
    assert throughput.per_s() == pytest.approx(20, rel=0.05)


def test_the_first_answers_after_a_quiet_spell_read_as_their_own_rate_not_a_window_s_share(clock):
    throughput = Throughput(window_s=3.0, min_calls=3)
    answer(throughput, clock, 30, 0.05)
    clock[0] += 60  # idle: the window empties
    assert throughput.per_s() is None
    answer(throughput, clock, 10, 0.05)  # a burst answered at 20/s for half a second
    assert throughput.per_s() == pytest.approx(20, rel=0.15)  # over the whole window this read 3.3/s


def test_answers_that_come_together_read_no_faster_than_the_shortest_span(clock):
    throughput = Throughput(window_s=3.0, min_calls=3)
    answer(throughput, clock, 4, 0.0)  # one batch of four
    assert throughput.per_s() == pytest.approx(4 / triton.MIN_THROUGHPUT_SPAN_S)
