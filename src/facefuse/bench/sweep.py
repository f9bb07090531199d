"""`facefuse bench sweep`: the cpu profile's serving settings, tuned by measurement.

In the spirit of Triton's Model Analyzer (which does not install here): for each
candidate configuration the model configs are generated from the typed specs with that
tuning (`facefuse_build.configs.Tuning`) into a copy of the built repository, a real
tritonserver starts on it, and `bench photo`'s client drives the `face_fusion` ensemble
at a fixed concurrency: posters/s, p50/p99 and Triton's per-stage statistics.

The search is a hill climb, one knob at a time (the grid's product would take hours on
two cores), from the committed tuning (`--from-specs`: from the specs' own values):
every other value of a knob is measured with the best settings found so far, and kept
when it is feasible (no failed call, p99 within `p99_factor` x the start's p99) and at
least `min_gain` faster. Then the winner and the start alternate in ABBA blocks, so the
last comparison sees the same minutes of this shared machine; the winner is adopted only
if it is still at least `min_gain` faster there and within the bound (a gain within this
box's noise would otherwise buy a stub's memory for nothing). `--write` makes the adopted one (or
the start) the profile's defaults (`build/facefuse_build/tuned/cpu.json`, the table
beside it) and regenerates the built repository's configs.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facefuse import samples
from facefuse.bench.photo import _accumulate, _drive, _result, _stage_figures, _stage_statistics
from facefuse.settings import Settings

PROFILE = "cpu"
TUNED_TABLE = "cpu-sweep.md"


@dataclass(frozen=True)
class Knob:
    """One serving setting: a ModelSpec field of some models, or (models empty) the
    queue delay every Python stage shares."""

    label: str
    values: tuple
    models: tuple[str, ...] = ()
    field: str = "python_stage_queue_delay_us"

    def tuning(self, value):
        from facefuse_build.configs import Tuning

        if not self.models:
            return Tuning(python_stage_queue_delay_us=value)
        return Tuning(models={m: {self.field: value} for m in self.models})


# The cpu profile's steps that hold the time (bench photo at concurrency 8: fuse_faces'
# compute, the hops' queue delay), not every field of every model.
CPU_STEPS = ("template_bank", "detect_faces", "mesh_faces", "fuse_faces")
DEFAULT_KNOBS = (
    Knob("python stages' queue delay (us)", (0, 250, 1000, 4000)),
    # A Python step serves the requests of one execution one after another: a batch of 3
    # keeps one instance busy for three posters while the others may idle. A preferred
    # batch size of 1 sends each request to an instance at once.
    Knob("cpu steps' preferred batch size", (None, (1,)), CPU_STEPS, "cpu_preferred_batch_sizes"),
    Knob("fuse_faces instances", (2, 3, 4), ("fuse_faces",), "instances_cpu"),
    Knob("detect_faces instances", (1, 2, 3), ("detect_faces",), "instances_cpu"),
    Knob("mesh_faces instances", (1, 2), ("mesh_faces",), "instances_cpu"),
)
QUICK_KNOBS = (Knob("python stages' queue delay (us)", (0, 1000)),)


@dataclass(frozen=True)
class SweepPlan:
    knobs: tuple[Knob, ...] = DEFAULT_KNOBS
    concurrency: int = 8
    requests: int = 160
    confirm_rounds: int = 2  # ABBA pairs of blocks, winner vs start
    p99_factor: float = 1.2  # feasible: p99 <= this x the start's p99
    min_gain: float = 0.03  # a change must be at least this much faster to be kept

    @classmethod
    def quick(cls) -> "SweepPlan":
        return cls(QUICK_KNOBS, concurrency=4, requests=24, confirm_rounds=0)  # for tests: no ABBA confirmation


@dataclass
class Point:
    """One configuration, measured once."""

    label: str
    tuning: dict
    posters_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    error: str | None = None
    load_average_1m: float = 0.0
    stages: dict = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list, repr=False)


@dataclass
class SweepReport:
    machine: dict
    plan: dict
    start: dict  # the tuning the climb starts from
    p99_bound_ms: float = 0.0
    points: list[dict] = field(default_factory=list)
    confirmation: dict = field(default_factory=dict)
    chosen: dict = field(default_factory=dict)  # the tuning adopted, or the start's
    chosen_label: str = "default"
    command: str = ""
    date: str = ""


# ---- the decisions (pure) ---------------------------------------------------------
def feasible(point: Point, p99_bound_ms: float) -> bool:
    return point.error is None and point.requests > 0 and point.p99_ms <= p99_bound_ms


def pick(candidates: list[Point], incumbent: Point, p99_bound_ms: float, min_gain: float) -> Point:
    """The fastest feasible candidate that beats the incumbent by min_gain, else the incumbent."""
    better = [p for p in candidates if feasible(p, p99_bound_ms)
              and p.posters_per_s >= incumbent.posters_per_s * (1 + min_gain)]
    return max(better, key=lambda p: p.posters_per_s) if better else incumbent


def confirmed(start_blocks: list[Point], winner_blocks: list[Point], p99_factor: float, min_gain: float) -> dict:
    """ABBA blocks of the start and the winner: the winner is adopted when its median
    throughput beats the start's by min_gain and its pooled p99 stays within p99_factor x
    the start's pooled p99 (both from these blocks, the same minutes of the machine)."""
    def pooled(blocks):
        latencies = [s for b in blocks if b.error is None for s in b.latencies_s]
        return float(np.percentile(np.asarray(latencies) * 1000, 99)) if latencies else float("inf")

    def median_rate(blocks):
        return statistics.median(b.posters_per_s if b.error is None else 0.0 for b in blocks)

    start_rate, winner_rate = median_rate(start_blocks), median_rate(winner_blocks)
    start_p99, winner_p99 = pooled(start_blocks), pooled(winner_blocks)
    bound = start_p99 * p99_factor
    adopted = (all(b.error is None for b in winner_blocks) and winner_rate >= start_rate * (1 + min_gain)
               and winner_p99 <= bound)
    return {"start_posters_per_s": round(start_rate, 2), "winner_posters_per_s": round(winner_rate, 2),
            "start_p99_ms": round(start_p99, 1), "winner_p99_ms": round(winner_p99, 1),
            "p99_bound_ms": round(bound, 1), "adopted": adopted}


def label_of(tuning, defaults) -> str:
    """What a tuning changes from the defaults, e.g. 'fuse.instances_cpu=3'."""
    changes = []
    if tuning.python_stage_queue_delay_us not in (None, defaults.python_stage_queue_delay_us):
        changes.append(f"python_delay_us={tuning.python_stage_queue_delay_us}")
    for model, fields in sorted(tuning.models.items()):
        for name, value in sorted(fields.items()):
            if defaults.models.get(model, {}).get(name) != value:
                shown = "max" if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else value
                changes.append(f"{model}.{name}={shown}")
    return "; ".join(changes) or "default"


def spec_defaults(knobs: tuple[Knob, ...], settings: Settings):
    """The specs' own values of the swept settings, as a Tuning (the committed tuning left out)."""
    from facefuse_build.configs import PYTHON_STAGE_QUEUE_DELAY_US, Profile, Tuning, model_specs

    specs = {s.name: s for s in model_specs(Profile(PROFILE), settings, Tuning())}
    models: dict[str, dict] = {}
    for knob in knobs:
        for model in knob.models:
            models.setdefault(model, {})[knob.field] = getattr(specs[model], knob.field)
    return Tuning(PYTHON_STAGE_QUEUE_DELAY_US, models)


# ---- measuring ------------------------------------------------------------------------
def measure(settings: Settings, tuning, label: str, plan: SweepPlan, photo: bytes) -> Point:
    """Configs for this tuning written into the copy settings name, a fresh tritonserver
    on it, a warm-up, then plan.requests posters at plan.concurrency."""
    from tritonclient.utils import InferenceServerException

    from facefuse.server.triton import TritonStartError, embedded_triton
    from facefuse.triton_client import instance_counts
    from facefuse_build.configs import Profile
    from facefuse_build.pipeline import write_configs

    point = Point(label, tuning.to_dict(), load_average_1m=round(os.getloadavg()[0], 2))
    write_configs(Profile(PROFILE), settings, tuning=tuning)
    try:
        with embedded_triton(settings) as triton:
            client = triton.client()
            try:
                asyncio.run(_drive(triton, photo, plan.concurrency, plan.concurrency * 3))
                instances = instance_counts(client)
                before = _stage_statistics(client, tuple(instances))
                latencies, seconds = asyncio.run(_drive(triton, photo, plan.concurrency, plan.requests))
                totals: dict = {}
                _accumulate(totals, before, _stage_statistics(client, tuple(instances)))
                point.stages = _stage_figures(totals, len(latencies), instances)
            finally:
                client.close()
    except (TritonStartError, InferenceServerException) as exc:  # a config Triton refuses or that fails calls: a result
        point.error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        return point
    result = _result(plan.concurrency, latencies, seconds)
    point.posters_per_s, point.p50_ms, point.p99_ms = result.posters_per_s, result.p50_ms, result.p99_ms
    point.requests, point.latencies_s = result.requests, latencies
    return point


def run_sweep(settings: Settings, plan: SweepPlan, out_dir: Path, write: bool = False, command: str = "",
              echo=print, from_specs: bool = False) -> SweepReport:
    """The hill climb starts from the committed tuning (a rerun refines it: settings
    interact, and a knob measured on other instance counts can read the other way), or
    from the specs' own values with from_specs; the winner is confirmed against the start."""
    from facefuse.bench.swap import copy_repository
    from facefuse_build.configs import TUNED_DIR, Profile, Tuning, tuned
    from facefuse_build.pipeline import write_configs

    photo = samples.astronaut()
    local = copy_repository(settings, out_dir / "repository")
    specs = spec_defaults(plan.knobs, settings)
    start_tuning = specs if from_specs else specs.merged(tuned(PROFILE))
    report = SweepReport(
        machine={"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                 "python": platform.python_version()},
        plan={**asdict(plan), "knobs": [asdict(k) for k in plan.knobs]},
        start=start_tuning.to_dict(), command=command, date=datetime.date.today().isoformat(),
    )

    def run(tuning) -> Point:
        point = measure(local, tuning, label_of(tuning, specs), plan, photo)
        report.points.append(_row(point))
        echo(_line(point))
        return point

    start = incumbent = run(start_tuning)
    if start.error:
        raise RuntimeError(f"the starting configuration failed: {start.error}")
    report.p99_bound_ms = round(start.p99_ms * plan.p99_factor, 1)
    for knob in plan.knobs:
        now = incumbent.tuning.get("models", {}).get(knob.models[0], {}).get(knob.field) if knob.models \
            else incumbent.tuning["python_stage_queue_delay_us"]
        current = Tuning.from_dict(incumbent.tuning)
        others = [v for v in knob.values if not _same(v, now)]
        tried = [run(current.merged(knob.tuning(v))) for v in others]
        incumbent = pick(tried, incumbent, report.p99_bound_ms, plan.min_gain)

    winner = Tuning.from_dict(incumbent.tuning)
    if incumbent is not start and plan.confirm_rounds > 0:
        echo(f"confirming {incumbent.label} against the start in {plan.confirm_rounds * 2} ABBA blocks")
        blocks: dict[str, list[Point]] = {"start": [], "winner": []}
        for index in range(plan.confirm_rounds * 2):
            order = ("start", "winner") if index % 4 in (0, 3) else ("winner", "start")
            for who in order:
                point = measure(local, start_tuning if who == "start" else winner, who, plan, photo)
                echo("  " + _line(point))
                blocks[who].append(point)
        report.confirmation = confirmed(blocks["start"], blocks["winner"], plan.p99_factor, plan.min_gain)
        adopted = report.confirmation["adopted"]
    else:
        adopted = incumbent is not start
    chosen_point = incumbent if adopted else start
    report.chosen, report.chosen_label = Tuning.from_dict(chosen_point.tuning).to_dict(), chosen_point.label
    echo(f"chosen: {report.chosen_label}")
    write_report(report, out_dir)
    if write:
        chosen = Tuning.from_dict(report.chosen)
        write_tuning(report, chosen, TUNED_DIR)
        changed = write_configs(Profile(PROFILE), settings, tuning=chosen)
        echo(f"wrote {TUNED_DIR / (PROFILE + '.json')} and {TUNED_DIR / TUNED_TABLE}; configs regenerated: "
             f"{', '.join(changed) or 'none changed'} (a running server takes them at its next start)")
    return report


def _same(a, b) -> bool:
    return (tuple(a) if isinstance(a, (list, tuple)) else a) == (tuple(b) if isinstance(b, (list, tuple)) else b)


def _row(point: Point) -> dict:
    row = asdict(point)
    row.pop("latencies_s")
    return row


def _line(point: Point) -> str:
    if point.error:
        return f"{point.label:<60} failed: {point.error}"
    return (f"{point.label:<60} {point.posters_per_s:6.2f} posters/s  p50 {point.p50_ms:6.1f} ms  "
            f"p99 {point.p99_ms:6.1f} ms  (load {point.load_average_1m})")


# ---- writing ------------------------------------------------------------------------
def table_lines(report: SweepReport) -> list[str]:
    plan = report.plan
    lines = [
        f"# `facefuse bench sweep` ({report.machine['cpu_count']} cores, {report.machine['processor']}, {report.date})",
        "",
        f"Command: `{report.command}`. Each row: configs generated with that tuning, a fresh tritonserver, "
        f"{plan['concurrency'] * 3} warm-up posters, then {plan['requests']} posters of the astronaut into "
        f"`hopper-portrait` at concurrency {plan['concurrency']} (`face_fusion` ensemble, bench photo's client). "
        f"The climb starts from the first row (labels: changes from the specs' own values). "
        f"Feasible: no failed call and p99 <= {plan['p99_factor']:g} x the first row's p99 "
        f"= **{report.p99_bound_ms:g} ms**; a change is kept when at least {plan['min_gain']:.0%} faster.",
        "",
        "| configuration (change from the specs) | posters/s | p50 ms | p99 ms | feasible | load avg 1m | busiest stage queue |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.points:
        if row["error"]:
            lines.append(f"| {row['label']} | failed: {row['error']} | | | no | {row['load_average_1m']} | |")
            continue
        ok = "yes" if row["p99_ms"] <= report.p99_bound_ms else "no"
        queues = {k: v["queue_ms_per_request"] for k, v in row["stages"].items()}
        busiest = max(queues, key=queues.get) if queues else ""
        lines.append(f"| {row['label']} | {row['posters_per_s']} | {row['p50_ms']} | {row['p99_ms']} | {ok} | "
                     f"{row['load_average_1m']} | {busiest} {queues.get(busiest, '')} ms |")
    c = report.confirmation
    if c:
        lines += ["", f"Confirmation, {plan['confirm_rounds'] * 2} blocks each in ABBA order: start "
                  f"{c['start_posters_per_s']} posters/s (p99 {c['start_p99_ms']} ms), winner "
                  f"{c['winner_posters_per_s']} posters/s (p99 {c['winner_p99_ms']} ms, bound {c['p99_bound_ms']} ms): "
                  + ("adopted." if c["adopted"] else "**not adopted** (the start stays).")]
    lines += ["", f"**Chosen: {report.chosen_label}.**", ""]
    return lines


def write_report(report: SweepReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out_dir / "sweep.md").write_text("\n".join(table_lines(report)))


def write_tuning(report: SweepReport, tuning, tuned_dir: Path) -> None:
    """The profile's defaults (read by facefuse_build.configs.tuned) and the table they came from."""
    tuned_dir.mkdir(parents=True, exist_ok=True)
    data = {**tuning.to_dict(), "chosen_by": {
        "command": report.command, "date": report.date, "label": report.chosen_label,
        "concurrency": report.plan["concurrency"], "p99_bound_ms": report.p99_bound_ms, "table": TUNED_TABLE,
    }}
    (tuned_dir / f"{PROFILE}.json").write_text(json.dumps(data, indent=2) + "\n")
    (tuned_dir / TUNED_TABLE).write_text("\n".join(table_lines(report)))
