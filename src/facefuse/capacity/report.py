"""The capacity report of a load test: Markdown, PNG plots and a JSON for the planner.

Reads Locust's full-history CSV (one row per request name per second) and the Triton
metrics samples recorded during the run. Throughput is counted in posters (a FuseMany
of five is five posters; a photo refused with its typed reason is none). Latency is the
photo calls' own (Locust's "Aggregated" row would mix in the video jobs' polls and
downloads); video jobs get their own section: jobs done, job latency under the photo
load and the frames/s one worker fused.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from facefuse.capacity.mix import PHOTO_NAMES, VIDEO_DOWNLOAD, VIDEO_JOB, VIDEO_RUNNING, VIDEO_SUBMIT
from facefuse.capacity.planner import Measurement
from facefuse.capacity.triton_metrics import Sample, stage_series, stage_totals

# Seconds at the start of each user-count step left out (ramp transients).
SETTLE_S = 3


@dataclass
class Step:
    users: int
    seconds: int
    posters_per_s: float
    requests_per_s: float
    failures_per_s: float
    p50_ms: float
    p99_ms: float


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _number(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def steps_from_history(rows: list[dict], posters_per_request: dict[str, float]) -> list[Step]:
    """One entry per user count that held for a while: posters/s and latency there."""
    by_time: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_time.setdefault(row["Timestamp"], {})[row["Name"]] = row
    seconds = sorted(by_time, key=float)
    groups: dict[int, list[dict[str, dict]]] = {}
    for timestamp in seconds:
        rows_now = by_time[timestamp]
        aggregated = rows_now.get("Aggregated")
        if aggregated is None:
            continue
        groups.setdefault(int(_number(aggregated["User Count"])), []).append(rows_now)
    steps = []
    for users, moments in groups.items():
        settled = moments[SETTLE_S:] if len(moments) > SETTLE_S + 2 else moments
        if users == 0 or not settled:
            continue

        def mean(values):
            values = list(values)
            return sum(values) / len(values) if values else 0.0

        posters = mean(
            sum(_number(r["Requests/s"]) * posters_per_request.get(name, 0.0) for name, r in m.items() if name != "Aggregated")
            for m in settled
        )
        photo = [[r for name, r in m.items() if name in PHOTO_NAMES] for m in settled]
        steps.append(Step(
            users=users, seconds=len(moments), posters_per_s=round(posters, 2),
            requests_per_s=round(mean(sum(_number(r["Requests/s"]) for r in rs) for rs in photo), 2),
            failures_per_s=round(mean(sum(_number(r["Failures/s"]) for r in rs) for rs in photo), 3),
            p50_ms=round(mean(_photo_p50(rs) for rs in photo if rs), 1),
            # Percentiles of several names do not merge exactly: the worst name's p99 bounds it from above.
            p99_ms=round(max((_number(r["99%"]) for rs in photo for r in rs), default=0.0), 1),
        ))
    return sorted(steps, key=lambda s: s.users)


def _photo_p50(rows: list[dict]) -> float:
    """The photo names' medians, weighted by their request rates."""
    rate = sum(_number(r["Requests/s"]) for r in rows)
    if rate <= 0:
        return max(_number(r["50%"]) for r in rows)
    return sum(_number(r["50%"]) * _number(r["Requests/s"]) for r in rows) / rate


def video_figures(stats_csv: Path) -> dict | None:
    """The video jobs of the run (None: it had none), from Locust's totals per name."""
    rows = {row["Name"]: row for row in read_history(stats_csv)}
    if VIDEO_SUBMIT not in rows:
        return None
    job, running = rows.get(VIDEO_JOB, {}), rows.get(VIDEO_RUNNING, {})
    running_s = _number(running.get("Request Count")) * _number(running.get("Average Response Time")) / 1000
    frames = _number(running.get("Request Count")) * _number(running.get("Average Content Size"))
    submits, downloads = rows[VIDEO_SUBMIT], rows.get(VIDEO_DOWNLOAD, {})
    return {
        "jobs_submitted": int(_number(submits["Request Count"]) - _number(submits["Failure Count"])),
        "jobs_done": int(_number(job.get("Request Count")) - _number(job.get("Failure Count"))),
        "jobs_failed": int(_number(job.get("Failure Count"))),
        "job_p50_ms": _number(job.get("50%")), "job_p99_ms": _number(job.get("99%")),
        "submit_p99_ms": _number(submits["99%"]), "download_p99_ms": _number(downloads.get("99%")),
        # One worker runs one job at a time (FACEFUSE_VIDEO_WORKER_CONCURRENCY=1): frames over
        # the seconds jobs were seen running is its frame rate beside the photo load.
        "frames_per_s": round(frames / running_s, 2) if running_s > 0 else 0.0,
        "frames_fused": int(frames),
    }


def posters_served(stats_csv: Path, posters_per_request: dict[str, float]) -> float:
    """Posters over the whole run, from Locust's totals per request name."""
    total = 0.0
    for row in read_history(stats_csv):
        name = row["Name"]
        if name in posters_per_request:
            total += (_number(row["Request Count"]) - _number(row["Failure Count"])) * posters_per_request[name]
    return total


def sustainable(steps: list[Step], p99_target_ms: float) -> Step | None:
    """The highest poster rate among steps whose p99 stayed under the target without failures."""
    ok = [s for s in steps if s.p99_ms <= p99_target_ms and s.failures_per_s == 0]
    return max(ok, key=lambda s: s.posters_per_s) if ok else None


def write_report(
    out_dir: Path, history_csv: Path, samples: list[Sample], p99_target_ms: float,
    posters_per_request: dict[str, float], device: str, gpus_per_replica: int,
    stage_instances: dict[str, int], command: str, video_template: dict | None = None,
) -> dict:
    """video_template: the jobs' template (its template_id and fps) when the run had video users."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_history(history_csv)
    steps = steps_from_history(rows, posters_per_request)
    best = sustainable(steps, p99_target_ms)
    stages = tuple(stage_instances)  # the fusion's stages on the served profile, in order
    totals = stage_totals(samples, stages)
    stats_csv = history_csv.with_name(history_csv.name.replace("_stats_history", "_stats"))
    posters = posters_served(stats_csv, posters_per_request) if stats_csv.is_file() else 0.0
    bottleneck = max(totals, key=lambda s: totals[s]["busy_s"] / max(stage_instances.get(s, 1), 1)) if totals else "unknown"
    measurement = Measurement(
        source=str(out_dir / "capacity.json"), device=device, gpus_per_replica=gpus_per_replica,
        sustainable_posters_per_s=best.posters_per_s if best else 0.0,
        p50_ms_at_sustainable=best.p50_ms if best else 0.0,
        p99_ms_at_sustainable=best.p99_ms if best else 0.0,
        # Stage busy time per poster served: decode runs once per photo, fuse once per poster.
        stage_compute_ms_per_poster={s: round(t["busy_s"] * 1000 / posters, 2) for s, t in totals.items()} if posters else {},
        stage_instances=stage_instances,
    )
    video = video_figures(stats_csv) if stats_csv.is_file() else None
    if video is not None:
        video.update({"template_id": (video_template or {}).get("template_id", ""),
                      "template_fps": (video_template or {}).get("fps", 0.0)})
    _plot_throughput(out_dir / "throughput_vs_users.png", steps, p99_target_ms)
    _plot_latency(out_dir / "latency_over_time.png", rows)
    _plot_stages(out_dir / "stage_times.png", stage_series(samples, stages))
    result = {
        "command": command, "p99_target_ms": p99_target_ms, "bottleneck_stage": bottleneck,
        "steps": [asdict(s) for s in steps], "stages": totals, "capacity": asdict(measurement),
    }
    if video is not None:
        result["video"] = video
    (out_dir / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "report.md").write_text(_markdown(result, best))
    return result


def _markdown(result: dict, best: Step | None) -> str:
    cap = result["capacity"]
    lines = [
        "# Capacity report",
        "",
        f"Command: `{result['command']}`",
        f"Replica: {cap['device']}; p99 target {result['p99_target_ms']:g} ms.",
        "",
        (f"**Maximum sustainable throughput: {best.posters_per_s:g} posters/s** at {best.users} users "
         f"(p50 {best.p50_ms:g} ms, p99 {best.p99_ms:g} ms)." if best
         else "**No step held the p99 target**: the replica is overloaded at every measured level."),
        f"**Bottleneck stage: {result['bottleneck_stage']}** (most compute per instance).",
        "",
        "Photo calls (Fuse, FuseMany, bad photos; video rows left out):",
        "",
        "| users | seconds | posters/s | requests/s | failures/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {s['users']} | {s['seconds']} | {s['posters_per_s']} | {s['requests_per_s']} | {s['failures_per_s']} | "
              f"{s['p50_ms']} | {s['p99_ms']} |" for s in result["steps"]]
    if "video" in result:
        v = result["video"]
        lines += ["", f"Video jobs beside the photo load (template {v['template_id']}, {v['template_fps']:g} fps): "
                  f"{v['jobs_done']} done, {v['jobs_failed']} failed of {v['jobs_submitted']} submitted; "
                  f"job latency p50 {v['job_p50_ms']:g} ms, p99 {v['job_p99_ms']:g} ms (queue included); "
                  f"one worker fused **{v['frames_per_s']:g} frames/s** ({v['frames_fused']} frames); "
                  f"submit p99 {v['submit_p99_ms']:g} ms, download p99 {v['download_p99_ms']:g} ms."]
    lines += ["", "Triton stages over the run (from its metrics endpoint):", "",
              "| stage | requests | mean batch | queue ms/request | compute ms/request |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {t['requests']:.0f} | {t['mean_batch']} | {t['queue_ms_per_request']} | {t['compute_ms_per_request']} |"
              for name, t in result["stages"].items()]
    lines += ["", "![throughput vs users](throughput_vs_users.png)", "", "![latency over time](latency_over_time.png)",
              "", "![stage queue and compute](stage_times.png)", "",
              "Size a campaign from this report: `facefuse capacity --peak-tasks N --window-s S --p99-ms P "
              "--from <this folder>/capacity.json`" + (
                  "; with videos: `facefuse capacity-videos --selfies P --window-s T --posters-per-selfie N "
                  "--videos-per-selfie M --from <this folder>/capacity.json`." if "video" in result else "."), ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_throughput(path: Path, steps: list[Step], p99_target_ms: float) -> None:
    plt = _pyplot()
    fig, left = plt.subplots(figsize=(7, 4))
    users = [s.users for s in steps]
    left.plot(users, [s.posters_per_s for s in steps], "o-", color="tab:blue", label="posters/s")
    left.set_xlabel("concurrent users")
    left.set_ylabel("posters/s", color="tab:blue")
    right = left.twinx()
    right.plot(users, [s.p99_ms for s in steps], "s--", color="tab:red", label="p99 ms")
    right.axhline(p99_target_ms, color="tab:red", linewidth=0.8, linestyle=":")
    right.set_ylabel("p99 latency (ms)", color="tab:red")
    left.set_title("Throughput and p99 vs concurrency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_latency(path: Path, rows: list[dict]) -> None:
    plt = _pyplot()
    agg = [r for r in rows if r["Name"] == PHOTO_NAMES[0]]  # Fuse, most of the photo calls
    if not agg:
        return
    start = _number(agg[0]["Timestamp"])
    t = [_number(r["Timestamp"]) - start for r in agg]
    fig, ax = plt.subplots(figsize=(7, 4))
    for column, style in (("50%", "-"), ("95%", "--"), ("99%", ":")):
        ax.plot(t, [_number(r[column]) for r in agg], style, label=f"p{column.rstrip('%')}")
    users = ax.twinx()
    users.plot(t, [_number(r["User Count"]) for r in agg], color="grey", alpha=0.4)
    users.set_ylabel("users")
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{PHOTO_NAMES[0]} latency percentiles over time")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_stages(path: Path, series: dict[str, list[tuple[float, float, float]]]) -> None:
    plt = _pyplot()
    fig, (queue_ax, compute_ax) = plt.subplots(1, 2, figsize=(10, 4))
    start = min((points[0][0] for points in series.values() if points), default=0.0)
    for stage, points in series.items():
        if not points:
            continue
        t = [p[0] - start for p in points]
        queue_ax.plot(t, [p[1] for p in points], label=stage)
        compute_ax.plot(t, [p[2] for p in points], label=stage)
    queue_ax.set_title("Triton queue ms per request")
    compute_ax.set_title("Triton compute ms per request")
    for ax in (queue_ax, compute_ax):
        ax.set_xlabel("seconds")
    if any(series.values()):
        compute_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
