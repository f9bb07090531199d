"""`facefuse bench swap`: a fuse version swapped under Locust load; figures to a file.

On a copy of the built repository (the user's release state is not touched), Triton
and the gateway (its own process) are started, Locust runs the project's load mix at
a steady number of users, and during the run a new `fuse` version is published
(numerics and golden-set gates), put on a 10% canary, promoted and rolled back.
From Locust's per-second history: calls/s, failures and p99 before the swap, during it
(publish start to rollback end) and after. The candidate is by default a copy of the
serving fuse model (what is measured is the swap, not a different program).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from facefuse.settings import Settings


@dataclass(frozen=True)
class SwapPlan:
    users: int = 8
    before_s: float = 45.0  # steady load before the publish starts
    hold_s: float = 20.0  # at each of canary and promote
    after_s: float = 30.0  # after the rollback


def copy_repository(settings: Settings, root: Path) -> Settings:
    """The built repository and ensembles copied under root, without release state or
    release ensembles; returns settings that point at the copy."""
    shutil.rmtree(root, ignore_errors=True)
    repository, ensembles = root / "model_repository", root / "ensembles"
    shutil.copytree(settings.model_repository_dir, repository,
                    ignore=shutil.ignore_patterns(".staging-*", ".releases.json", ".audit.jsonl"))
    shutil.copytree(settings.ensembles_dir, ensembles, ignore=shutil.ignore_patterns("*_r[0-9]*"))
    return settings.model_copy(update={"model_repository_dir": repository, "ensembles_dir": ensembles})


def _phase(rows: list[dict], start: float, end: float) -> dict:
    from facefuse.capacity.report import _number

    inside = [r for r in rows if start <= float(r["Timestamp"]) < end]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    seconds = float(last["Timestamp"]) - float(first["Timestamp"])
    calls = _number(last["Total Request Count"]) - _number(first["Total Request Count"])
    p99s = [_number(r["99%"]) for r in inside if r["99%"] not in ("N/A", "")]
    return {
        "seconds": round(seconds, 1),
        "calls": int(calls),
        "calls_per_s": round(calls / seconds, 2) if seconds > 0 else 0.0,
        "failures": int(_number(last["Total Failure Count"]) - _number(first["Total Failure Count"])),
        # Locust's per-second rows carry percentiles over its recent window (about 10 s).
        "p99_ms_median_window": round(statistics.median(p99s), 1) if p99s else None,
        "p99_ms_worst_window": round(max(p99s), 1) if p99s else None,
    }


def run_swap_bench(settings: Settings, out_dir: Path, plan: SwapPlan = SwapPlan(), candidate: Path | None = None,
                   echo=print) -> dict:
    from facefuse.capacity.loadtest import LoadTestPlan, locust_commands
    from facefuse.capacity.report import read_history
    from facefuse.gateway.dev_key import ensure_dev_key
    from facefuse.gateway.process import start_gateway
    from facefuse.gateway.settings import GatewaySettings
    from facefuse.models_admin.lifecycle import ModelAdmin
    from facefuse.models_admin.releases import serving_model_path
    from facefuse.models_admin.triton_admin import TritonAdmin
    from facefuse.server.triton import embedded_triton

    out_dir.mkdir(parents=True, exist_ok=True)
    local = copy_repository(settings, out_dir / "repository")
    candidate = candidate or serving_model_path(local.model_repository_dir, "fuse")
    shutil.copyfile(candidate, out_dir / "candidate.onnx")  # publish reads it while the copy may change
    admin_key = secrets.token_urlsafe(24)
    duration = 1800.0  # an upper bound: Locust is stopped once the after-phase is recorded
    events: list[tuple[str, float]] = []
    with embedded_triton(local, admin_key=admin_key) as triton:
        env = dict(os.environ, FACEFUSE_TRITON_GATEWAY_KEY=triton.gateway_key, FACEFUSE_GATEWAY_RELEASES_FILE=str(local.model_repository_dir / ".releases.json"))
        key = ensure_dev_key(GatewaySettings())  # before the gateway starts: it reads its keys once
        gateway, port = start_gateway(triton.grpc_url, env)
        admin = ModelAdmin(local, TritonAdmin(triton.grpc_url, admin_key, triton.gateway_key), log=echo)
        try:
            csv_prefix = out_dir / "locust"
            command = locust_commands(LoadTestPlan("steady", plan.users, 10.0, duration), f"127.0.0.1:{port}", key,
                                      csv_prefix)[0]
            locust = subprocess.Popen(command, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            started = time.time()
            try:
                time.sleep(plan.before_s)
                events.append(("publish", time.time()))
                release, _ = admin.publish("fuse", source=out_dir / "candidate.onnx")
                events.append(("canary 10%", time.time()))
                admin.canary(release, 10)
                time.sleep(plan.hold_s)
                events.append(("promote", time.time()))
                admin.promote(release)
                time.sleep(plan.hold_s)
                events.append(("rollback", time.time()))
                admin.rollback()
                events.append(("rolled back", time.time()))
                # Stop Locust once the after-phase is recorded.
                time.sleep(max(0.0, plan.after_s - (time.time() - events[-1][1])))
            finally:
                locust.terminate()
                locust.wait(timeout=60)
        finally:
            admin.admin.close()
            gateway.terminate()
            gateway.wait(timeout=30)
    rows = [r for r in read_history(Path(f"{csv_prefix}_stats_history.csv")) if r["Name"] == "Aggregated"]
    swap_start, swap_end = events[0][1], events[-1][1]
    result = {
        "users": plan.users,
        "events_s": {name: round(at - started, 1) for name, at in events},
        "before": _phase(rows, started + 15, swap_start),  # the first 15 s warm up
        "during_swap": _phase(rows, swap_start, swap_end + 1),
        "after": _phase(rows, swap_end + 1, time.time()),
        "candidate": str(candidate),
        "machine": f"cpu x{os.cpu_count()}",
    }
    (out_dir / "swap-bench.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| phase | seconds | calls/s | failures | p99 (median 10 s window) | p99 (worst window) |", "|---|---|---|---|---|---|"]
    for phase in ("before", "during_swap", "after"):
        f = result[phase]
        lines.append(f"| {phase} | {f.get('seconds')} | {f.get('calls_per_s')} | {f.get('failures')} | "
                     f"{f.get('p99_ms_median_window')} ms | {f.get('p99_ms_worst_window')} ms |")
    events_line = ", ".join(f"{n} at {t} s" for n, t in result["events_s"].items())
    (out_dir / "swap-bench.md").write_text(f"# fuse swap under load ({plan.users} users, {result['machine']})\n\n"
                                           f"{events_line}\n\n" + "\n".join(lines) + "\n")
    shutil.rmtree(out_dir / "repository", ignore_errors=True)
    return result
