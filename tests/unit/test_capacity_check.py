"""`facefuse capacity check`'s logic without a server: the prediction it reads, the
open-loop schedule, the figures and the met/broken decision."""

from __future__ import annotations

import json

import pytest

from facefuse.capacity.check import (
    CheckPlan, Phase, arrival_times, conclusion, posters_per_call, prediction_from_report, summarize,
)
from facefuse.capacity.mix import BAD_PHOTO, FUSE, FUSE_MANY


def write_report(path, steps):
    """steps: [(users, posters/s, p99 ms, failures/s)]"""
    path.write_text(json.dumps({
        "steps": [{"users": u, "seconds": 15, "posters_per_s": rate, "requests_per_s": rate / 1.7,
                   "failures_per_s": failures, "p50_ms": p99 / 2, "p99_ms": p99} for u, rate, p99, failures in steps],
        "capacity": {"device": "cpu x2", "sustainable_posters_per_s": 99.0},
    }))
    return path


def test_the_prediction_is_the_fastest_step_that_held_the_slo_asked_for(tmp_path):
    report = write_report(tmp_path / "capacity.json",
                          [(4, 18.0, 400.0, 0.0), (8, 24.0, 900.0, 0.0), (16, 26.0, 1500.0, 0.0), (32, 27.0, 1200.0, 0.2)])
    assert prediction_from_report(report, 1000.0).posters_per_s == 24.0
    # Not the report's own sustainable rate (made for its target): the SLO given here decides.
    assert prediction_from_report(report, 2000.0).posters_per_s == 26.0
    assert prediction_from_report(report, 2000.0).users == 16


def test_a_report_with_no_step_under_the_slo_predicts_nothing(tmp_path):
    report = write_report(tmp_path / "capacity.json", [(1, 5.0, 300.0, 0.0)])
    with pytest.raises(ValueError, match="no step"):
        prediction_from_report(report, 100.0)


def test_a_bench_photo_report_is_refused_because_its_calls_are_not_the_load_tests_mix(tmp_path):
    path = tmp_path / "photo-bench.json"
    path.write_text(json.dumps({"triton": [], "stages_uncontended": {}}))
    with pytest.raises(ValueError, match="not a load-test capacity report"):
        prediction_from_report(path, 1000.0)


def test_posters_per_call_weighs_the_mix():
    assert posters_per_call({FUSE: 3, FUSE_MANY: 1, BAD_PHOTO: 1}, {FUSE: 1, FUSE_MANY: 5, BAD_PHOTO: 0}) == pytest.approx(8 / 5)


def test_uniform_arrivals_are_evenly_spaced_at_the_rate():
    assert arrival_times(4.0, 1.0, "uniform") == [0.0, 0.25, 0.5, 0.75]


def test_poisson_arrivals_keep_the_mean_rate_and_repeat_with_the_seed():
    times = arrival_times(20.0, 500.0, "poisson", seed=7)
    assert len(times) == pytest.approx(10_000, rel=0.05)
    assert times == sorted(times) and 0 < times[0] and times[-1] < 500.0
    assert times == arrival_times(20.0, 500.0, "poisson", seed=7)
    assert times != arrival_times(20.0, 500.0, "poisson", seed=8)


@pytest.mark.parametrize("rate, duration, arrivals", [(0.0, 10.0, "poisson"), (5.0, 0.0, "uniform"), (5.0, 10.0, "burst")])
def test_a_schedule_without_rate_or_duration_or_of_unknown_kind_is_refused(rate, duration, arrivals):
    with pytest.raises(ValueError):
        arrival_times(rate, duration, arrivals)


def call(t, latency_ms, name=FUSE, ok=True, reason=None):
    return {"t": t, "name": name, "ok": ok, "reason": reason, "latency_ms": latency_ms, "lag_ms": 1.0}


PLAN = CheckPlan(slo_p99_ms=500.0, duration_s=12.0, warmup_s=2.0)


def test_summary_leaves_out_the_warm_up_and_counts_posters_delivered_per_second():
    records = [call(0.5, 5000.0)]  # in the warm-up: neither counted nor slow
    records += [call(2 + i, 100.0) for i in range(9)] + [call(11.0, 200.0, FUSE_MANY)]
    phase = summarize(records, Phase(1.0, 1.0, 1.4), PLAN)
    assert phase.calls == 10 and phase.failures == 0
    assert phase.posters_offered == phase.posters_delivered == 14
    assert phase.goodput_posters_per_s == 1.4 and phase.goodput_share == 1.0
    assert phase.p99_ms < 500.0 and phase.verdict == "met"


def test_failed_calls_cost_goodput_and_are_counted_by_reason():
    records = [call(2 + i, 100.0) for i in range(8)]
    records += [call(10.0, 30.0, ok=False, reason="OVERLOADED"), call(10.5, 10_000.0, ok=False, reason="DEADLINE_EXCEEDED")]
    phase = summarize(records, Phase(1.2, 1.0, 1.0), PLAN)
    assert phase.failures_by_reason == {"DEADLINE_EXCEEDED": 1, "OVERLOADED": 1}
    assert phase.goodput_share == 0.8 and phase.verdict == "broken" and phase.broken_by == ["goodput"]


def test_a_correct_refusal_of_a_bad_photo_is_a_success_that_yields_no_poster():
    records = [call(2.0, 50.0, BAD_PHOTO), call(3.0, 100.0)]
    phase = summarize(records, Phase(1.0, 1.0, 1.0), PLAN)
    assert phase.failures == 0 and phase.posters_offered == 1 and phase.goodput_share == 1.0


def test_the_slo_breaks_when_p99_is_over_it_even_with_every_poster_delivered():
    records = [call(2 + i / 10, 100.0 if i < 90 else 900.0) for i in range(100)]
    phase = summarize(records, Phase(1.0, 1.0, 1.0), PLAN)
    assert phase.goodput_share == 1.0 and phase.p99_ms > 500.0 and phase.verdict == "broken"
    assert phase.broken_by == ["p99"]


def test_a_phase_without_calls_is_broken():
    assert summarize([], Phase(1.0, 1.0, 1.0), PLAN).verdict == "broken"


def test_conclusion_says_whether_the_prediction_holds_and_how_tight_it_is():
    def phase(multiplier, outcome):
        p = Phase(multiplier, 1.0, 1.0)
        p.verdict = outcome
        return p

    assert "holds and is tight" in conclusion([phase(1.0, "met"), phase(1.2, "broken")])
    assert "conservative" in conclusion([phase(1.0, "met"), phase(1.2, "met")])
    assert "does not hold" in conclusion([phase(1.0, "broken"), phase(1.2, "broken")])
    assert "utilisation of at most 0.75" in conclusion([phase(0.5, "met"), phase(0.75, "met"), phase(1.0, "broken")])
