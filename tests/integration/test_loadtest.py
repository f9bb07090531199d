"""A low-load, bounded, distributed Locust run (a master and two local workers) end to end."""

from __future__ import annotations

import csv
import json

import pytest

from facefuse.capacity.loadtest import LoadTestPlan, run_load_test
from facefuse.gateway.dev_key import ensure_dev_key
from facefuse.gateway.server import GatewayThread
from facefuse.gateway.settings import GatewaySettings

pytestmark = pytest.mark.slow


def test_a_short_distributed_run_writes_a_capacity_report(triton, tmp_path):
    settings = GatewaySettings(triton_urls=[triton.grpc_url], keys_file=tmp_path / "keys.json")
    key = ensure_dev_key(settings)
    plan = LoadTestPlan(shape="steady", max_users=2, duration_s=12, workers=2, p99_ms=5000)
    with GatewayThread(settings, port=0) as gateway:
        result = run_load_test(plan, tmp_path / "report", "pytest smoke run",
                               (f"127.0.0.1:{gateway.port}", triton.metrics_url, key, triton.grpc_url),
                               device="smoke-test stack", gpus_per_replica=0, echo=lambda *_: None)

    out = tmp_path / "report"
    for name in ("report.md", "capacity.json", "throughput_vs_users.png", "latency_over_time.png", "stage_times.png"):
        assert (out / name).is_file(), name
    rows = {r["Name"]: r for r in csv.DictReader(open(out / "locust_stats.csv"))}
    assert int(rows["Fuse"]["Request Count"]) > 0
    # Bad photos came back with their typed reasons: not failures.
    assert all(int(r["Failure Count"]) == 0 for r in rows.values()), rows
    capacity = json.loads((out / "capacity.json").read_text())["capacity"]
    assert capacity["sustainable_posters_per_s"] > 0
    assert capacity["device"] == "smoke-test stack" and capacity["gpus_per_replica"] == 0
    assert result["bottleneck_stage"] in capacity["stage_compute_ms_per_poster"]
