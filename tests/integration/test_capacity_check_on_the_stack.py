"""`facefuse capacity check` end to end at a low rate: the load test's mix offered as an
open loop through a real gateway and Triton, every call recorded and judged."""

from __future__ import annotations

import json

import pytest

from facefuse.capacity.check import CheckPlan, run_check
from facefuse.capacity.mix import WEIGHTS
from facefuse.gateway.dev_key import ensure_dev_key
from facefuse.gateway.server import GatewayThread
from facefuse.gateway.settings import GatewaySettings

pytestmark = pytest.mark.slow


def test_an_open_loop_phase_offers_the_predicted_rate_and_judges_every_call(triton, tmp_path):
    report = tmp_path / "capacity.json"
    report.write_text(json.dumps({
        "steps": [{"users": 1, "seconds": 15, "posters_per_s": 2.0, "requests_per_s": 1.2, "failures_per_s": 0.0,
                   "p50_ms": 200.0, "p99_ms": 400.0}],
        "capacity": {"device": "smoke-test stack"},
    }))
    settings = GatewaySettings(triton_urls=[triton.grpc_url], keys_file=tmp_path / "keys.json")
    key = ensure_dev_key(settings)
    plan = CheckPlan(slo_p99_ms=5000.0, multipliers=(1.0,), duration_s=8.0, warmup_s=1.0, call_timeout_s=30.0)
    with GatewayThread(settings, port=0) as gateway:
        result = run_check(report, plan, tmp_path / "check", "pytest smoke run", (f"127.0.0.1:{gateway.port}", key),
                           echo=lambda *_: None)

    phase = result["phases"][0]
    assert result["prediction"]["posters_per_s"] == 2.0
    calls = [json.loads(line) for line in (tmp_path / "check" / "phase-1x-calls.jsonl").read_text().splitlines()]
    assert calls and {c["name"] for c in calls} <= set(WEIGHTS)
    assert phase["calls"] > 0 and phase["posters_delivered"] > 0
    # A call that fails is judged by its typed reason (a bad photo's expected refusal is a
    # success): never an untyped error or a bad photo that was fused.
    assert not {"INTERNAL", "UNKNOWN", "UNEXPECTED_SUCCESS"} & set(phase["failures_by_reason"]), phase
    assert phase["verdict"] in ("met", "broken")
    assert "| 1x |" in (tmp_path / "check" / "check.md").read_text()
