"""`facefuse bench photo`: posters/s and latency on Triton vs a hand-rolled baseline.

In one run, on one machine:
- Triton: the `face_fusion` ensemble driven by an asyncio gRPC client at several
  concurrencies; per-stage queue and compute time from Triton's statistics API;
  resident memory of tritonserver and its backend stubs;
- baseline: the same stage functions (`LocalPipeline`: decode, detector, align,
  landmarks, fuse, postprocess) called in sequence, one worker process per core, each
  with warm ONNX Runtime sessions and the thread count Triton's instances get.
Figures are written as JSON and Markdown; nothing here asserts anything.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from facefuse import samples
from facefuse.settings import Settings, get_settings
from facefuse.triton_client import (
    POSTER_OUTPUT,
    FuseOptions,
    fusion_inputs,
    instance_counts,
    with_gateway_key,
)

TEMPLATE = "hopper-portrait"
# Posters per concurrency-1 probe of the uncontended stage compute, one probe per round.
PROBE_POSTERS = 12


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    seconds: float
    posters_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class BenchReport:
    machine: dict
    template: str
    triton: list[LoadResult] = field(default_factory=list)
    baseline: LoadResult | None = None
    # The highest concurrency's Triton and baseline blocks, alternating in time.
    rounds: list[dict] = field(default_factory=list)
    # CPU time per poster over those blocks: Triton's by process (tritonserver, each
    # model's stubs, the client) and the baseline workers' together.
    cpu_ms_per_poster: dict = field(default_factory=dict)
    # Per-stage figures at concurrency 1 (uncontended compute, for the bound; a short
    # probe in every round) and at the highest (batching and queueing under load).
    stages_uncontended: dict = field(default_factory=dict)
    stages_at_peak: dict = field(default_factory=dict)
    compute_bound_posters_per_s: float = 0.0
    # Share of the machine's cores each side kept busy over its blocks at the highest
    # concurrency: its CPU time over wall time x cores (Triton: its processes and the client).
    cores_busy: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)
    # With --beauty V: posters with all four beauty effects at V vs off, and Beautify
    # calls (facefuse.bench.beauty.BeautyCost).
    beauty: dict = field(default_factory=dict)


def _percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(latencies_s) * 1000
    return tuple(float(np.percentile(ms, q)) for q in (50, 95, 99))  # type: ignore[return-value]


def cores_busy(cpu_ms: float, seconds: float, cores: int) -> float:
    """The share of `cores` that `cpu_ms` of CPU time kept busy over `seconds` of wall time."""
    return round(cpu_ms / (seconds * 1000 * cores), 3) if seconds > 0 and cores > 0 else 0.0


def cpu_ratios(cpu_ms_per_poster: dict) -> dict[str, float]:
    """Triton's CPU per poster over the baseline's: its stage calls only (how issue 20
    first measured it) and its whole processes (counted as Triton's are)."""
    triton, baseline = cpu_ms_per_poster["triton"]["total"], cpu_ms_per_poster["baseline"]
    return {"triton_vs_baseline_cpu_stages": round(triton / baseline["total"], 3),
            "triton_vs_baseline_cpu_whole_processes": round(triton / baseline[WHOLE_PROCESSES], 3)}


def _result(concurrency: int, latencies: list[float], seconds: float) -> LoadResult:
    p50, p95, p99 = _percentiles(latencies)
    return LoadResult(concurrency, len(latencies), round(seconds, 3), round(len(latencies) / seconds, 2),
                      round(p50, 1), round(p95, 1), round(p99, 1))


# ---- Triton ------------------------------------------------------------------------
async def _drive(triton, photo: bytes, concurrency: int, requests: int) -> tuple[list[float], float]:
    client = with_gateway_key(aioclient.InferenceServerClient(triton.grpc_url), triton.gateway_key)
    latencies: list[float] = []
    remaining = requests

    # Built once: the client's CPU shares the cores with the server it measures.
    inputs = fusion_inputs(photo, TEMPLATE, 0, FuseOptions())

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await client.infer("face_fusion", inputs, outputs=POSTER_OUTPUT)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    await client.close()
    return latencies, elapsed


def _stage_statistics(client: grpcclient.InferenceServerClient, stages: tuple[str, ...]) -> dict[str, dict]:
    return stage_statistics(client.get_inference_statistics(as_json=True)["model_stats"], stages)


def stage_statistics(model_stats: list[dict], stages: tuple[str, ...]) -> dict[str, dict]:
    """Per stage, summed over its loaded versions: after `models publish` a stage has two
    (each its own entry under the same name), and Triton's JSON leaves out a count that
    is zero (a version that never served has no `success.count`)."""
    out: dict[str, dict] = {}
    for model in model_stats:
        if model["name"] not in stages:
            continue
        s = model.get("inference_stats", {})
        totals = out.setdefault(model["name"], {"requests": 0, "executions": 0, "queue_ns": 0, "compute_ns": 0})
        totals["requests"] += int(s.get("success", {}).get("count", 0))
        totals["executions"] += int(model.get("execution_count", 0))
        totals["queue_ns"] += int(s.get("queue", {}).get("ns", 0))
        totals["compute_ns"] += sum(int(s.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output"))
    return out


def _stage_figures(totals: dict, posters: int, instances: dict[str, int]) -> dict:
    """Per-stage batch, compute and queue figures from statistics summed by _accumulate
    (stages: the keys of instances, in their order)."""
    figures = {}
    for name in instances:
        t = totals.get(name, {})
        executions, requests = t.get("executions", 0), t.get("requests", 0)
        compute, queue = t.get("compute_ns", 0), t.get("queue_ns", 0)
        figures[name] = {
            "instances": instances.get(name, 1),
            "mean_batch": round(requests / executions, 2) if executions else 0.0,
            "compute_ms_per_execution": round(compute / executions / 1e6, 2) if executions else 0.0,
            "compute_ms_per_poster": round(compute / posters / 1e6, 2),
            "queue_ms_per_request": round(queue / requests / 1e6, 2) if requests else 0.0,
        }
    return figures


def _accumulate(totals: dict, before: dict, after: dict) -> None:
    """Add the statistics' growth between two snapshots to totals (same shape)."""
    for name, stats in after.items():
        into = totals.setdefault(name, dict.fromkeys(stats, 0))
        for key, value in stats.items():
            into[key] += value - before.get(name, {}).get(key, 0)


def _process_tree(root_pid: int) -> list[int]:
    pids, frontier = [], [root_pid]
    while frontier:
        pid = frontier.pop()
        pids.append(pid)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        frontier.extend(int(c) for c in children)
    return pids


def _memory(root_pid: int) -> dict:
    """Resident and proportional set size of a process and all its descendants."""
    pids = _process_tree(root_pid)
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return {"processes": len(pids), "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


def _process_cpu_ms(pid: int) -> float:
    """utime + stime of a process so far, in milliseconds (OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _server_cpu_ms(root_pid: int) -> dict[str, float]:
    """CPU milliseconds so far of tritonserver and of each model's backend stubs (by model)."""
    totals: dict[str, float] = {}
    for pid in _process_tree(root_pid):
        try:
            spent = _process_cpu_ms(pid)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # A stub's first argument is .../<model>/<version>/model.py.
        name = "tritonserver" if pid == root_pid else Path(argv[1].decode()).parent.parent.name
        totals[name] = totals.get(name, 0.0) + spent
    return totals


# ---- baseline ------------------------------------------------------------------------
_worker_pipeline = None
_worker_template = None


def _baseline_init(settings_json: str) -> None:
    global _worker_pipeline, _worker_template
    from facefuse.local_pipeline import LocalPipeline
    from facefuse.templates import TemplateStore

    settings = Settings.model_validate_json(settings_json)
    _worker_pipeline = LocalPipeline(settings, threads=1)
    _worker_pipeline.stage_cpu_s = {}
    _worker_template = TemplateStore(settings.templates_path).load(TEMPLATE)


def _baseline_poster(photo: bytes) -> tuple[float, float, dict[str, float]]:
    """(seconds, CPU seconds, CPU seconds by stage) of one poster."""
    _worker_pipeline.stage_cpu_s.clear()
    start, cpu_start = time.perf_counter(), time.process_time()
    user = _worker_pipeline.analyze_user(photo)
    _worker_pipeline.fuse(user, _worker_template)
    return time.perf_counter() - start, time.process_time() - cpu_start, dict(_worker_pipeline.stage_cpu_s)


# The baseline's CPU counted like Triton's: whole processes (the workers and the bench
# process that feeds them), not only the time inside each poster's stage calls.
WHOLE_PROCESSES = "whole processes (workers + bench process)"


class BaselineWorkers:
    """One warm `LocalPipeline` process per core, kept open so that its rounds can
    alternate with Triton's in the same minutes."""

    def __init__(self, settings: Settings, workers: int):
        from facefuse.server.triton import with_worker_tunables

        self.workers = workers
        # The workers run with the allocator and thread settings the server runs with.
        tunables = {k: v for k, v in with_worker_tunables(os.environ).items() if os.environ.get(k) != v}
        inherited = {k: os.environ.get(k) for k in tunables}
        os.environ.update(tunables)
        try:
            self._pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=_baseline_init, initargs=(settings.model_dump_json(),)
            )
        finally:
            for name, value in inherited.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
        self._pool.map(_baseline_poster, [samples.astronaut()] * workers * 2)  # warm every worker

    def run(self, photo: bytes, requests: int) -> tuple[list[float], float, dict[str, float]]:
        """(latencies, seconds, CPU seconds: of the posters' calls in all workers, in total and
        by stage; and WHOLE_PROCESSES, the workers' processes and this one over the block, as
        Triton's side is counted: the pool's own work and its pickling included)."""
        # Pool keeps its worker processes in _pool (CPython); none is replaced without maxtasksperchild.
        pids = [worker.pid for worker in self._pool._pool]
        processes_before, this_before = sum(_process_cpu_ms(pid) for pid in pids), time.process_time()
        start = time.perf_counter()
        timings = self._pool.map(_baseline_poster, [photo] * requests, chunksize=1)
        seconds = time.perf_counter() - start
        cpu = {"total": sum(t[1] for t in timings)}
        for _, _, stages in timings:
            for name, spent in stages.items():
                cpu[name] = cpu.get(name, 0.0) + spent
        cpu[WHOLE_PROCESSES] = ((sum(_process_cpu_ms(pid) for pid in pids) - processes_before) / 1000
                                + time.process_time() - this_before)
        return [t[0] for t in timings], seconds, cpu

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


# ---- the run -------------------------------------------------------------------------
def run_photo_bench(concurrencies: list[int], requests_per_level: int, out_dir: Path, rounds: int = 8,
                    echo=print, beauty: float | None = None) -> BenchReport:
    """Triton at each concurrency; at the highest one, `rounds` blocks of Triton and of
    the baseline alternate (ABBA order), so that the ratio compares the two over the same
    minutes: this shared machine's speed drifts by 10-20% within minutes."""
    from facefuse.server.triton import embedded_triton

    settings = get_settings()
    photo = samples.astronaut()
    cores = os.cpu_count() or 1
    report = BenchReport(
        machine={"cpu_count": cores, "processor": platform.processor() or platform.machine(),
                 "python": platform.python_version()},
        template=TEMPLATE,
    )
    top_concurrency = max(concurrencies)
    baseline = BaselineWorkers(settings, cores)
    try:
        with embedded_triton(settings) as triton:
            client = triton.client()
            instances = instance_counts(client)  # the fusion's stages on this profile
            asyncio.run(_drive(triton, photo, top_concurrency, top_concurrency * 3))  # warm-up

            def triton_block(concurrency: int) -> tuple[list[float], float]:
                return asyncio.run(_drive(triton, photo, concurrency, requests_per_level))

            def probe_block() -> None:
                # A few posters one at a time: the stages' uncontended compute, sampled in
                # every round so that the bound sees the same machine speed as the rounds.
                asyncio.run(_drive(triton, photo, 1, PROBE_POSTERS))

            for concurrency in sorted(concurrencies):
                if concurrency < top_concurrency:
                    latencies, elapsed = triton_block(concurrency)
                else:
                    rounds_run = InterleavedRounds(baseline, photo, requests_per_level, client, triton.process.pid,
                                                   tuple(instances))
                    latencies, elapsed = rounds_run.run(report, rounds, lambda: triton_block(top_concurrency),
                                                        probe_block, echo)
                    report.stages_uncontended = _stage_figures(rounds_run.probe_stats, rounds * PROBE_POSTERS, instances)
                    report.stages_at_peak = _stage_figures(rounds_run.peak_stats, len(latencies), instances)
                    report.memory = _memory(triton.process.pid)
                result = _result(concurrency, latencies, elapsed)
                report.triton.append(result)
                echo(f"triton   c={concurrency:<3} {result.posters_per_s:7.2f} posters/s  "
                     f"p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms")
            if beauty is not None:
                from facefuse.bench.beauty import measure_beauty_cost

                report.beauty = asdict(measure_beauty_cost(triton, client, photo, TEMPLATE, beauty, top_concurrency,
                                                           requests_per_level, rounds, echo))
            client.close()
    finally:
        baseline.close()
    b = report.baseline
    echo(f"baseline {cores} processes {b.posters_per_s:7.2f} posters/s  p50 {b.p50_ms:7.1f} ms  p99 {b.p99_ms:7.1f} ms")

    # Bound from uncontended per-stage compute: every core busy with stage compute only.
    compute_per_poster_s = sum(s["compute_ms_per_poster"] for s in report.stages_uncontended.values()) / 1000
    report.compute_bound_posters_per_s = round(cores / compute_per_poster_s, 2) if compute_per_poster_s else 0.0
    top = max(report.triton, key=lambda r: r.concurrency)
    report.ratios = {
        "triton_vs_baseline_throughput": round(top.posters_per_s / b.posters_per_s, 3),
        "triton_vs_compute_bound": round(top.posters_per_s / report.compute_bound_posters_per_s, 3)
        if report.compute_bound_posters_per_s else 0.0,
        **cpu_ratios(report.cpu_ms_per_poster),
    }
    echo(f"ratios at c={top.concurrency}: {report.ratios}; memory {report.memory}")
    write_report(report, out_dir)
    return report


class InterleavedRounds:
    """At the highest concurrency: rounds of a Triton block and a baseline block (ABBA
    order), each round opened by a concurrency-1 probe of Triton. Collects Triton's
    stage statistics for the blocks and the probes apart, and both sides' CPU time."""

    def __init__(self, baseline: BaselineWorkers, photo: bytes, requests: int, client, server_pid: int,
                 stages: tuple[str, ...]):
        self.baseline, self.photo, self.requests = baseline, photo, requests
        self.client, self.server_pid, self.stages = client, server_pid, stages
        self.peak_stats: dict = {}
        self.probe_stats: dict = {}
        self.triton_cpu_ms: dict[str, float] = {}
        self.baseline_cpu_s: dict[str, float] = {}

    def _triton(self, triton_block) -> tuple[list[float], float]:
        stats_before = _stage_statistics(self.client, self.stages)
        server_before, client_before = _server_cpu_ms(self.server_pid), time.process_time()
        latencies, seconds = triton_block()
        spent = {name: ms - server_before.get(name, 0.0) for name, ms in _server_cpu_ms(self.server_pid).items()}
        spent["client (bench process)"] = (time.process_time() - client_before) * 1000
        for name, ms in spent.items():
            self.triton_cpu_ms[name] = self.triton_cpu_ms.get(name, 0.0) + ms
        _accumulate(self.peak_stats, stats_before, _stage_statistics(self.client, self.stages))
        return latencies, seconds

    def _baseline(self) -> tuple[list[float], float]:
        latencies, seconds, cpu_s = self.baseline.run(self.photo, self.requests)
        for name, spent_s in cpu_s.items():
            self.baseline_cpu_s[name] = self.baseline_cpu_s.get(name, 0.0) + spent_s
        return latencies, seconds

    def run(self, report: BenchReport, rounds: int, triton_block, probe_block, echo) -> tuple[list[float], float]:
        """Fills report.rounds, report.baseline and report.cpu_ms_per_poster; returns
        Triton's latencies and seconds over all its blocks."""
        runs = {"triton": ([], 0.0), "baseline": ([], 0.0)}
        for index in range(rounds):
            before = _stage_statistics(self.client, self.stages)
            probe_block()
            _accumulate(self.probe_stats, before, _stage_statistics(self.client, self.stages))
            order = ("baseline", "triton") if index % 4 in (0, 3) else ("triton", "baseline")
            block = {}
            for who in order:
                latencies, seconds = self._triton(triton_block) if who == "triton" else self._baseline()
                runs[who] = (runs[who][0] + latencies, runs[who][1] + seconds)
                block[who] = len(latencies) / seconds
            ratio = block["triton"] / block["baseline"]
            report.rounds.append({"triton_posters_per_s": round(block["triton"], 2),
                                  "baseline_posters_per_s": round(block["baseline"], 2), "ratio": round(ratio, 3)})
            echo(f"round {index + 1}/{rounds}: triton {block['triton']:6.2f}  baseline {block['baseline']:6.2f}  "
                 f"posters/s  ratio {ratio:.3f}")
        triton_latencies, triton_seconds = runs["triton"]
        baseline_latencies, baseline_seconds = runs["baseline"]
        report.baseline = _result(self.baseline.workers, baseline_latencies, baseline_seconds)
        triton_per_poster = {name: round(ms / len(triton_latencies), 2) for name, ms in self.triton_cpu_ms.items()}
        triton_per_poster["total"] = round(sum(triton_per_poster.values()), 2)
        report.cpu_ms_per_poster = {
            "triton": triton_per_poster,
            "baseline": {name: round(s * 1000 / len(baseline_latencies), 2) for name, s in self.baseline_cpu_s.items()},
        }
        cores = report.machine["cpu_count"]
        report.cores_busy = {"triton": cores_busy(sum(self.triton_cpu_ms.values()), triton_seconds, cores),
                             "baseline": cores_busy(self.baseline_cpu_s.get(WHOLE_PROCESSES, 0.0) * 1000,
                                                    baseline_seconds, cores)}
        return triton_latencies, triton_seconds


def write_report(report: BenchReport, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "photo-bench.json", out_dir / "photo-bench.md"
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    lines = [
        f"# Photo fusion benchmark ({report.machine['cpu_count']} cores, {report.machine['processor']})",
        "",
        f"Template `{report.template}`, photo: scikit-image astronaut (512x512 JPEG), JPEG output.",
        "",
        "| run | concurrency | posters/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.triton:
        lines.append(f"| Triton | {r.concurrency} | {r.posters_per_s} | {r.p50_ms} | {r.p95_ms} | {r.p99_ms} |")
    b = report.baseline
    lines.append(f"| baseline ({b.concurrency} processes) | {b.concurrency} | {b.posters_per_s} | {b.p50_ms} | {b.p95_ms} | {b.p99_ms} |")
    top = max(report.triton, key=lambda r: r.concurrency)
    lines += ["", f"Triton at concurrency {top.concurrency} and the baseline, in alternating blocks (ABBA order):", "",
              "| round | Triton posters/s | baseline posters/s | ratio |", "|---|---|---|---|"]
    lines += [f"| {i} | {r['triton_posters_per_s']} | {r['baseline_posters_per_s']} | {r['ratio']} |"
              for i, r in enumerate(report.rounds, 1)]
    cpu = report.cpu_ms_per_poster
    lines += ["", ("CPU ms per poster over those blocks: Triton's processes (utime + stime from /proc) and the "
                   "baseline's stages (process time around each stage call; its total, and its whole processes "
                   "counted as Triton's are):"), "",
              "| stage or process | Triton | baseline |", "|---|---|---|"]
    # Triton's stages in pipeline order, then the baseline's stages (its own names), then processes.
    stages = [*report.stages_at_peak, *(n for n in cpu["baseline"]
                                         if n not in report.stages_at_peak and n not in ("total", WHOLE_PROCESSES))]
    names = [*stages, *sorted(set(cpu["triton"]) - set(stages) - {"total"}), "total", WHOLE_PROCESSES]
    lines += [f"| {name} | {cpu['triton'].get(name, '-')} | {cpu['baseline'].get(name, '-')} |" for name in names]
    for title, stages in (("concurrency-1 probes, one per round (uncontended)", report.stages_uncontended),
                          ("highest concurrency", report.stages_at_peak)):
        lines += ["", f"Stages at the {title}, from Triton's statistics:", "",
                  "| stage | instances | mean batch | compute ms/exec | compute ms/poster | queue ms/request |",
                  "|---|---|---|---|---|---|"]
        for name, s in stages.items():
            lines.append(f"| {name} | {s['instances']} | {s['mean_batch']} | {s['compute_ms_per_execution']} | "
                         f"{s['compute_ms_per_poster']} | {s['queue_ms_per_request']} |")
    lines += [
        "",
        f"Compute bound: {report.compute_bound_posters_per_s} posters/s (cores / summed stage compute per poster).",
        f"Ratios: {json.dumps(report.ratios)}",
        f"Cores busy over the blocks at concurrency {top.concurrency} (CPU time / wall time x cores): "
        f"{json.dumps(report.cores_busy)}",
        f"Server memory (tritonserver + stubs): {json.dumps(report.memory)}",
        "",
    ]
    if report.beauty:
        from facefuse.bench.beauty import BeautyCost, report_lines

        lines += report_lines(BeautyCost(**report.beauty))
    md_path.write_text("\n".join(lines))
    return json_path, md_path
