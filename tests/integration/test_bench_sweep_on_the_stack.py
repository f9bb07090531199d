"""`facefuse bench sweep --quick` end to end: configs generated per configuration into a
copy of the built repository, a real tritonserver each, the table written."""

from __future__ import annotations

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from facefuse.bench.sweep import QUICK_KNOBS, SweepPlan, run_sweep
from facefuse_build.configs import tuned

pytestmark = pytest.mark.slow


def test_a_quick_sweep_measures_each_configuration_on_its_own_server_and_picks_one(settings, built_repository,
                                                                                    template_store, tmp_path):
    report = run_sweep(settings, SweepPlan.quick(), tmp_path, echo=lambda *_: None)

    labels = [p["label"] for p in report.points]
    # The climb starts from the committed tuning and tries the knob's other value on it.
    committed = tuned("cpu").to_dict()
    start = report.points[0]["tuning"]
    assert start["python_stage_queue_delay_us"] == committed["python_stage_queue_delay_us"]
    assert all(start["models"][model][name] == value
               for model, fields in committed["models"].items() for name, value in fields.items())
    assert set(QUICK_KNOBS[0].values) <= {p["tuning"]["python_stage_queue_delay_us"] for p in report.points}
    assert all(p["error"] is None and p["requests"] == SweepPlan.quick().requests for p in report.points), report.points
    # The copy holds the configs generated for the last server the sweep started.
    decode = text_format.Parse((tmp_path / "repository" / "model_repository" / "decode" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert decode.dynamic_batching.max_queue_delay_microseconds in QUICK_KNOBS[0].values
    assert report.chosen_label in labels
    table = (tmp_path / "sweep.md").read_text()
    assert all(f"| {label} |" in table for label in labels)
    assert json.loads((tmp_path / "sweep.json").read_text())["p99_bound_ms"] == report.p99_bound_ms
