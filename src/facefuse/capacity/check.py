"""`facefuse capacity check`: the planner's prediction, tested by an open-loop load test.

A capacity report (`facefuse loadtest run`) says what one replica sustains with p99
under a target: the highest step of its closed-loop ramp that held it. The check takes
that rate for the SLO asked (recomputed from the report's steps), then offers it to a
real gateway + Triton as an *open* loop: calls arrive on a schedule (Poisson arrivals at
a constant mean rate, the load test's mix of calls) whether or not earlier ones have
answered, as a campaign's users do. A closed loop slows its callers down when the server
slows and so hides overload; an open loop does not. Each phase (1.0x and 1.2x the
predicted rate by default) measures goodput (posters delivered per second of arrivals)
and p99 from each call's scheduled arrival, and says met or broken:

- met: p99 <= the SLO and goodput >= `goodput_share` of the posters offered;
- the prediction holds when 1.0x is met; at 1.2x "broken" means the predicted rate is
  near the edge (tight), "met" that the report leaves headroom uncredited (conservative).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facefuse.capacity.mix import POSTERS_PER_REQUEST, WEIGHTS

ARRIVALS = ("poisson", "uniform")


@dataclass(frozen=True)
class Prediction:
    source: str
    slo_p99_ms: float
    posters_per_s: float  # what the report says one replica sustains under the SLO
    users: int  # the closed-loop step it was measured at
    p50_ms: float
    p99_ms: float
    device: str


@dataclass(frozen=True)
class CheckPlan:
    slo_p99_ms: float
    multipliers: tuple[float, ...] = (1.0, 1.2)
    duration_s: float = 120.0  # arrivals per phase
    warmup_s: float = 10.0  # arrivals in the first seconds of a phase are left out of the figures
    call_timeout_s: float = 10.0  # a call not answered by then is a failure
    arrivals: str = "poisson"
    seed: int = 1
    goodput_share: float = 0.95  # met: at least this share of the offered posters delivered


@dataclass
class Phase:
    multiplier: float
    offered_calls_per_s: float
    offered_posters_per_s: float
    calls: int = 0
    failures: int = 0
    failures_by_reason: dict = field(default_factory=dict)
    posters_offered: int = 0
    posters_delivered: int = 0
    goodput_posters_per_s: float = 0.0
    goodput_share: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_send_lag_ms: float = 0.0  # how late the generator sent a call after its scheduled time
    load_average_1m: float = 0.0
    verdict: str = "broken"
    broken_by: list[str] = field(default_factory=list)  # "p99", "goodput"


# ---- the prediction ---------------------------------------------------------------
def prediction_from_report(path: Path, slo_p99_ms: float) -> Prediction:
    """The sustainable posters/s of a load-test capacity report under this SLO: the best
    step whose p99 held it without failures (the report's own rule, re-applied)."""
    from facefuse.capacity.report import Step, sustainable

    data = json.loads(Path(path).read_text())
    if "steps" not in data or "capacity" not in data:
        raise ValueError(f"{path} is not a load-test capacity report (capacity.json of `facefuse loadtest run`): "
                         "the check needs the rate measured with the load test's mix of calls")
    steps = [Step(**s) for s in data["steps"]]
    best = sustainable(steps, slo_p99_ms)
    if best is None:
        held = ", ".join(f"{s.users} users: p99 {s.p99_ms:g} ms" for s in steps)
        raise ValueError(f"no step of {path} held p99 <= {slo_p99_ms:g} ms without failures ({held}): "
                         "the report predicts no sustainable rate under this SLO")
    return Prediction(str(path), slo_p99_ms, best.posters_per_s, best.users, best.p50_ms, best.p99_ms,
                      data["capacity"].get("device", ""))


def posters_per_call(weights: dict[str, float] = WEIGHTS, posters: dict[str, float] = POSTERS_PER_REQUEST) -> float:
    """Mean posters per call of the mix (a refused bad photo yields none, FuseMany five)."""
    return sum(w * posters[name] for name, w in weights.items()) / sum(weights.values())


# ---- the open-loop schedule -----------------------------------------------------------
def arrival_times(rate_per_s: float, duration_s: float, arrivals: str = "poisson", seed: int = 1) -> list[float]:
    """Seconds from the phase's start at which calls arrive, independent of answers.

    poisson: exponential gaps (independent users), seeded so a rerun offers the same
    load; uniform: one call every 1/rate s. Either way the mean rate is rate_per_s.
    """
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError(f"an open loop needs a positive rate and duration, got {rate_per_s:g}/s for {duration_s:g} s")
    if arrivals == "uniform":
        return [i / rate_per_s for i in range(math.ceil(duration_s * rate_per_s))]
    if arrivals != "poisson":
        raise ValueError(f"unknown arrivals {arrivals!r}; use one of {', '.join(ARRIVALS)}")
    rng, times, t = random.Random(seed), [], 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= duration_s:
            return times
        times.append(t)


# ---- the figures and the verdict ------------------------------------------------------
def summarize(records: list[dict], phase: Phase, plan: CheckPlan) -> Phase:
    """records: one per call (scheduled `t` s into the phase, `latency_ms` from t, `ok`,
    `name`, `reason`, `lag_ms`); calls scheduled in the warm-up are left out."""
    window = [r for r in records if plan.warmup_s <= r["t"] < plan.duration_s]
    seconds = plan.duration_s - plan.warmup_s
    ok = [r for r in window if r["ok"]]
    phase.calls, phase.failures = len(window), len(window) - len(ok)
    reasons: dict[str, int] = {}
    for r in window:
        if not r["ok"]:
            reasons[r.get("reason") or "unknown"] = reasons.get(r.get("reason") or "unknown", 0) + 1
    phase.failures_by_reason = dict(sorted(reasons.items()))
    phase.posters_offered = int(sum(POSTERS_PER_REQUEST.get(r["name"], 0) for r in window))
    phase.posters_delivered = int(sum(POSTERS_PER_REQUEST.get(r["name"], 0) for r in ok))
    phase.goodput_posters_per_s = round(phase.posters_delivered / seconds, 2) if seconds > 0 else 0.0
    phase.goodput_share = round(phase.posters_delivered / phase.posters_offered, 3) if phase.posters_offered else 0.0
    latencies = np.asarray([r["latency_ms"] for r in ok]) if ok else np.asarray([math.inf])
    phase.p50_ms, phase.p99_ms = (round(float(np.percentile(latencies, q)), 1) for q in (50, 99))
    phase.max_send_lag_ms = round(max((r.get("lag_ms", 0.0) for r in window), default=0.0), 1)
    phase.broken_by = broken_by(phase, plan)
    phase.verdict = "broken" if phase.broken_by else "met"
    return phase


def broken_by(phase: Phase, plan: CheckPlan) -> list[str]:
    """What a phase broke: the p99 over the SLO, goodput under its share of the offered posters."""
    broken = []
    if phase.calls == 0 or phase.p99_ms > plan.slo_p99_ms:
        broken.append("p99")
    if phase.calls == 0 or phase.goodput_share < plan.goodput_share:
        broken.append("goodput")
    return broken


def conclusion(phases: list[Phase]) -> str:
    """What the phases say about the prediction (the 1.0x phase, any above it, and the
    highest below it that was met: how much of the predicted rate a replica holds)."""
    at_rate = next((p for p in phases if p.multiplier == 1.0), None)
    above = [p for p in phases if p.multiplier > 1.0]
    held = [p.multiplier for p in phases if p.multiplier < 1.0 and p.verdict == "met"]
    if at_rate is None:
        return "no phase at the predicted rate"
    if at_rate.verdict == "broken":
        return ("the prediction does not hold: at the predicted rate the SLO or goodput broke; the planner is "
                "optimistic for this replica" + (f" (met at {max(held):g}x: plan with a target utilisation of at "
                                                 f"most {max(held):g})" if held else
                                                 " (plan from a lower rate or a lower target utilisation)"))
    if above and all(p.verdict == "broken" for p in above):
        return "the prediction holds and is tight: met at the predicted rate, broken above it"
    if above:
        return "the prediction holds and is conservative: met at the predicted rate and above it"
    return "the prediction holds at the predicted rate"


# ---- running it ---------------------------------------------------------------------
def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_phase(host: str, api_key: str, phase: Phase, plan: CheckPlan, out_dir: Path, echo=print) -> Phase:
    """One open-loop phase through Locust (loadtest/locustfile.py's OpenLoopUser)."""
    from facefuse.capacity.loadtest import LoadTestPlan, locust_commands, run_locust

    name = f"phase-{phase.multiplier:g}x"
    log = out_dir / f"{name}-calls.jsonl"
    log.unlink(missing_ok=True)
    # One Locust user for the arrivals and the drain of the last calls; the user stops the run.
    run_s = plan.duration_s + plan.call_timeout_s + 5
    command = locust_commands(LoadTestPlan("steady", 1, 10.0, run_s), host, api_key, out_dir / name)[0]
    command += ["--arrival-rate", f"{phase.offered_calls_per_s:.4f}", "--open-loop-s", str(plan.duration_s),
                "--open-loop-arrivals", plan.arrivals, "--open-loop-seed", str(plan.seed),
                "--open-loop-log", str(log), "--call-timeout-s", str(plan.call_timeout_s)]
    echo(f"{name}: {phase.offered_calls_per_s:.2f} calls/s ({phase.offered_posters_per_s:.2f} posters/s) "
         f"for {plan.duration_s:g} s, {plan.arrivals} arrivals")
    phase.load_average_1m = round(os.getloadavg()[0], 2)
    code = run_locust([command], timeout_s=run_s + 120)
    if code not in (0, 1):  # 1: Locust saw failed calls, still a result
        raise RuntimeError(f"locust exited with code {code} in {name}")
    phase = summarize(read_records(log), phase, plan)
    echo(f"{name}: goodput {phase.goodput_posters_per_s:g} posters/s ({phase.goodput_share:.1%} of offered), "
         f"p50 {phase.p50_ms:g} ms, p99 {phase.p99_ms:g} ms, {phase.failures} failed -> {_verdict_text(asdict(phase))} "
         f"(load {phase.load_average_1m})")
    return phase


def run_check(report: Path, plan: CheckPlan, out_dir: Path, command: str = "", target: tuple[str, str] | None = None,
              echo=print) -> dict:
    """target: (gateway host:port, API key) of a running stack; None starts Triton + the gateway here."""
    import contextlib

    from facefuse.capacity.loadtest import local_stack

    prediction = prediction_from_report(report, plan.slo_p99_ms)
    per_call = posters_per_call()
    out_dir.mkdir(parents=True, exist_ok=True)
    echo(f"prediction ({report}): {prediction.posters_per_s:g} posters/s under p99 {plan.slo_p99_ms:g} ms "
         f"(closed loop, {prediction.users} users, p99 {prediction.p99_ms:g} ms)")
    phases = []
    stack = contextlib.nullcontext((target[0], None, target[1], None, None)) if target else local_stack()
    with stack as (host, _metrics_url, api_key, _triton_url, _gateway_key):
        for multiplier in plan.multipliers:
            posters = prediction.posters_per_s * multiplier
            phase = Phase(multiplier, round(posters / per_call, 3), round(posters, 2))
            phases.append(run_phase(host, api_key, phase, plan, out_dir, echo))
    result = {
        "command": command, "date": datetime.date.today().isoformat(), "machine_cpus": os.cpu_count(),
        "prediction": asdict(prediction), "plan": asdict(plan), "posters_per_call": round(per_call, 3),
        "phases": [asdict(p) for p in phases], "conclusion": conclusion(phases),
    }
    (out_dir / "check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "check.md").write_text(markdown(result))
    echo(result["conclusion"])
    return result


def _verdict_text(phase: dict) -> str:
    broken = phase.get("broken_by") or []
    return f"broken ({', '.join(broken)})" if phase["verdict"] == "broken" and broken else phase["verdict"]


def markdown(result: dict) -> str:
    p, plan = result["prediction"], result["plan"]
    lines = [
        "# Capacity check: the planner's prediction under an open loop",
        "",
        f"Command: `{result['command']}` ({result['date']}, {result['machine_cpus']} cores).",
        f"Prediction: `{p['source']}` says one replica ({p['device']}) sustains **{p['posters_per_s']:g} posters/s** "
        f"with p99 <= {p['slo_p99_ms']:g} ms (closed loop of {p['users']} users: p50 {p['p50_ms']:g} ms, "
        f"p99 {p['p99_ms']:g} ms).",
        f"Check: the load test's mix ({result['posters_per_call']:g} posters per call) offered as an open loop, "
        f"{plan['arrivals']} arrivals, {plan['duration_s']:g} s per phase (the first {plan['warmup_s']:g} s left out), "
        f"through the gateway; latency from each call's scheduled arrival; a call not answered in "
        f"{plan['call_timeout_s']:g} s fails. Met: p99 <= {plan['slo_p99_ms']:g} ms and at least "
        f"{plan['goodput_share']:.0%} of the offered posters delivered.",
        "",
        "| offered | posters/s offered | goodput posters/s | delivered | p50 ms | p99 ms | failed calls | generator's worst lag ms | load avg 1m | SLO |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph in result["phases"]:
        failures = ", ".join(f"{k} {v}" for k, v in ph["failures_by_reason"].items()) or "0"
        lines.append(f"| {ph['multiplier']:g}x | {ph['offered_posters_per_s']:g} | {ph['goodput_posters_per_s']:g} | "
                     f"{ph['goodput_share']:.1%} | {ph['p50_ms']:g} | {ph['p99_ms']:g} | {failures} | "
                     f"{ph['max_send_lag_ms']:g} | {ph['load_average_1m']} | **{_verdict_text(ph)}** |")
    lines += ["", f"**{result['conclusion'][0].upper()}{result['conclusion'][1:]}.**", ""]
    return "\n".join(lines)
