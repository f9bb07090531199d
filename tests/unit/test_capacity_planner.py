import json

import pytest

from facefuse.capacity.planner import Assumptions, Measurement, measurement_from_file, plan, render

MEASURED = Measurement(
    source="test", device="NVIDIA H100", gpus_per_replica=1, sustainable_posters_per_s=400.0,
    p50_ms_at_sustainable=120.0, p99_ms_at_sustainable=900.0,
    stage_compute_ms_per_poster={"decode": 4.0, "fuse": 2.0, "postprocess": 6.0},
    stage_instances={"decode": 4, "fuse": 2, "postprocess": 4},
)


def test_replicas_follow_from_rate_headroom_and_utilisation():
    p = plan(30000, 10, 2000, MEASURED, Assumptions(hedge_fraction=0.05, retry_fraction=0.01, target_utilization=0.75))
    assert p.arrival_posters_per_s == 3000
    assert p.load_posters_per_s == pytest.approx(3180)
    # 3180 / (400 * 0.75) = 10.6 -> 11 replicas, one GPU each.
    assert p.replicas == 11 and p.gpus == 11
    # Little's law: 3180 posters/s x 0.12 s in flight.
    assert p.in_flight == pytest.approx(381.6)
    assert p.bottleneck_stage == "postprocess"
    postprocess = next(s for s in p.stages if s.stage == "postprocess")
    assert postprocess.busy_instances_total == pytest.approx(19.08)
    assert postprocess.instances_per_replica == 3  # 19.08 / 11 / 0.75 = 2.3
    assert p.warnings == []


def test_the_bottleneck_is_the_stage_busiest_per_instance_not_the_one_with_most_compute():
    measured = Measurement(**{**MEASURED.__dict__, "stage_compute_ms_per_poster": {"decode": 3.0, "fuse": 8.0},
                              "stage_instances": {"decode": 1, "fuse": 4}})
    assert plan(30000, 10, 2000, measured).bottleneck_stage == "decode"


def test_more_posters_per_task_need_more_replicas():
    one = plan(30000, 10, 2000, MEASURED)
    five = plan(30000, 10, 2000, MEASURED, Assumptions(posters_per_task=5))
    assert five.replicas > 4 * one.replicas


def test_a_measurement_over_the_target_is_flagged():
    p = plan(1000, 10, 500, MEASURED)
    assert any("over the 500 ms target" in w for w in p.warnings)
    assert "WARNING" in render(p)


def test_bench_json_is_read_at_the_best_level_under_the_target(tmp_path):
    bench = {
        "machine": {"cpu_count": 2},
        "triton": [
            {"concurrency": 1, "posters_per_s": 12.0, "p50_ms": 80.0, "p99_ms": 95.0},
            {"concurrency": 4, "posters_per_s": 22.0, "p50_ms": 170.0, "p99_ms": 300.0},
            {"concurrency": 8, "posters_per_s": 25.0, "p50_ms": 320.0, "p99_ms": 450.0},
        ],
        "stages_uncontended": {"fuse": {"compute_ms_per_poster": 36.0, "instances": 2}},
    }
    path = tmp_path / "photo-bench.json"
    path.write_text(json.dumps(bench))
    m = measurement_from_file(path, p99_ms=400)
    assert m.sustainable_posters_per_s == 22.0 and m.p99_ms_at_sustainable == 300.0
    assert m.gpus_per_replica == 0 and m.stage_compute_ms_per_poster == {"fuse": 36.0}


def test_nonsense_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError):
        plan(0, 10, 2000, MEASURED)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="neither"):
        measurement_from_file(tmp_path / "x.json", 2000)
