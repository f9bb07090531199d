"""Size a campaign: how many Triton replicas (and GPUs) hold a peak at a p99 target.

The model, stated so an SRE can check it:
- arrivals: the peak's tasks spread evenly over its window, lambda = tasks / window;
- extra load: hedged retries re-send `hedge_fraction` of calls, retries on
  UNAVAILABLE re-send `retry_fraction`; both land on Triton;
- a replica's capacity is what it was *measured* to sustain with p99 under the target
  (from a load-test or bench report), run at most at `target_utilization` of that so
  the peak's jitter does not push p99 over;
- per stage, Little's law: busy instances = arrival rate x service time (the stage's
  measured compute per poster); the stage with the largest share is the bottleneck;
- in flight: L = lambda x latency (p50 at the sustained level), what the gateway and
  Triton queues must hold at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Measurement:
    """What one replica was measured to do (from `facefuse bench photo` or a load test)."""

    source: str
    device: str  # e.g. "cpu x2" or "NVIDIA H100"
    gpus_per_replica: int
    sustainable_posters_per_s: float  # highest measured rate with p99 under the target
    p50_ms_at_sustainable: float
    p99_ms_at_sustainable: float
    stage_compute_ms_per_poster: dict[str, float]
    stage_instances: dict[str, int]


@dataclass(frozen=True)
class Assumptions:
    posters_per_task: float = 1.0
    hedge_fraction: float = 0.05
    retry_fraction: float = 0.01
    target_utilization: float = 0.75


@dataclass
class StagePlan:
    stage: str
    compute_ms_per_poster: float
    busy_instances_total: float
    instances_per_replica: int


@dataclass
class Plan:
    peak_tasks: int
    window_s: float
    p99_target_ms: float
    arrival_posters_per_s: float
    load_posters_per_s: float  # with hedges and retries
    replicas: int
    gpus: int
    in_flight: float
    bottleneck_stage: str
    stages: list[StagePlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    measurement: dict = field(default_factory=dict)
    assumptions: dict = field(default_factory=dict)


def plan(peak_tasks: int, window_s: float, p99_ms: float, measured: Measurement,
         assumptions: Assumptions = Assumptions()) -> Plan:
    if peak_tasks <= 0 or window_s <= 0 or p99_ms <= 0:
        raise ValueError("peak tasks, window and p99 target must be positive")
    if measured.sustainable_posters_per_s <= 0:
        raise ValueError(f"{measured.source} holds no sustainable rate under a p99 target; run a load test first")
    arrival = peak_tasks / window_s * assumptions.posters_per_task
    load = arrival * (1 + assumptions.hedge_fraction + assumptions.retry_fraction)
    usable_per_replica = measured.sustainable_posters_per_s * assumptions.target_utilization
    replicas = max(1, math.ceil(load / usable_per_replica))
    stages = []
    for stage, compute_ms in measured.stage_compute_ms_per_poster.items():
        busy = load * compute_ms / 1000.0
        stages.append(StagePlan(stage, compute_ms, round(busy, 2),
                                max(1, math.ceil(busy / replicas / assumptions.target_utilization))))
    # As in the load-test report: the stage busiest per instance it was measured with.
    per_instance = {s.stage: s.compute_ms_per_poster / max(measured.stage_instances.get(s.stage, 1), 1) for s in stages}
    bottleneck = max(per_instance, key=per_instance.get) if stages else "unknown"
    warnings = []
    if measured.p99_ms_at_sustainable > p99_ms:
        warnings.append(
            f"the measured p99 at the sustainable rate ({measured.p99_ms_at_sustainable:.0f} ms) is over the "
            f"{p99_ms:.0f} ms target: re-measure with this target, the plan is optimistic"
        )
    if measured.p50_ms_at_sustainable > p99_ms:
        warnings.append("even the median latency is over the p99 target on this hardware: no replica count meets it")
    return Plan(
        peak_tasks=peak_tasks, window_s=window_s, p99_target_ms=p99_ms,
        arrival_posters_per_s=round(arrival, 1), load_posters_per_s=round(load, 1),
        replicas=replicas, gpus=replicas * measured.gpus_per_replica,
        in_flight=round(load * measured.p50_ms_at_sustainable / 1000.0, 1),
        bottleneck_stage=bottleneck, stages=stages, warnings=warnings,
        measurement=asdict(measured), assumptions=asdict(assumptions),
    )


def measurement_from_file(path: Path, p99_ms: float) -> Measurement:
    """Read a `facefuse bench photo` JSON or a load-test capacity JSON."""
    data = json.loads(Path(path).read_text())
    if "triton" in data and "stages_uncontended" in data:  # facefuse bench photo
        levels = [r for r in data["triton"] if r["p99_ms"] <= p99_ms] or []
        best = max(levels, key=lambda r: r["posters_per_s"]) if levels else None
        stages = data["stages_uncontended"]
        return Measurement(
            source=str(path), device=f"cpu x{data['machine']['cpu_count']}", gpus_per_replica=0,
            sustainable_posters_per_s=best["posters_per_s"] if best else 0.0,
            p50_ms_at_sustainable=best["p50_ms"] if best else 0.0,
            p99_ms_at_sustainable=best["p99_ms"] if best else 0.0,
            stage_compute_ms_per_poster={k: v["compute_ms_per_poster"] for k, v in stages.items()},
            stage_instances={k: v["instances"] for k, v in stages.items()},
        )
    if "capacity" in data:  # loadtest report
        return Measurement(**{**data["capacity"], "source": str(path)})
    raise ValueError(f"{path} is neither a `facefuse bench photo` JSON nor a load-test capacity JSON")


def render(p: Plan) -> str:
    m = p.measurement
    lines = [
        f"Peak: {p.peak_tasks} tasks in {p.window_s:g} s -> {p.arrival_posters_per_s:g} posters/s; "
        f"with hedges and retries {p.load_posters_per_s:g} posters/s to serve at p99 <= {p.p99_target_ms:g} ms.",
        f"Measured ({m['source']}): one replica on {m['device']} sustains {m['sustainable_posters_per_s']:g} posters/s "
        f"(p50 {m['p50_ms_at_sustainable']:g} ms, p99 {m['p99_ms_at_sustainable']:g} ms).",
        "",
        f"Triton replicas: {p.replicas}" + (f"  (GPUs: {p.gpus})" if p.gpus else "  (CPU replicas of the measured machine)"),
        f"In flight at peak (Little's law, L = rate x p50): {p.in_flight:g} requests",
        f"Bottleneck stage: {p.bottleneck_stage}",
        "",
        "| stage | compute ms/poster | busy instances at peak (all replicas) | instances per replica |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s.stage} | {s.compute_ms_per_poster:g} | {s.busy_instances_total:g} | {s.instances_per_replica} |" for s in p.stages]
    a = p.assumptions
    lines += [
        "",
        f"Assumptions: tasks spread evenly over the window; {a['posters_per_task']:g} posters per task; "
        f"hedges +{a['hedge_fraction']:.0%}, retries +{a['retry_fraction']:.0%} of calls; replicas run at "
        f"{a['target_utilization']:.0%} of their measured sustainable rate; per-replica throughput scales linearly "
        "with replicas (Triton replicas share nothing).",
    ]
    lines += [f"WARNING: {w}" for w in p.warnings]
    return "\n".join(lines) + "\n"
