"""The photo bench's per-stage statistics, as Triton reports them after a hot swap."""

from __future__ import annotations

from facefuse.bench.photo import stage_statistics


def test_statistics_are_summed_over_versions_and_a_version_that_never_served_counts_zero():
    model_stats = [
        {"name": "fuse", "version": "1", "execution_count": "10",
         "inference_stats": {"success": {"count": "12", "ns": "5"}, "queue": {"count": "12", "ns": "1000"},
                             "compute_infer": {"count": "10", "ns": "4000"}}},
        # Just published: loaded, no call yet. Triton's JSON leaves the zero counts out.
        {"name": "fuse", "version": "2", "inference_stats": {"success": {}, "queue": {}}},
        {"name": "fuse", "version": "3", "execution_count": "2",
         "inference_stats": {"success": {"count": "3"}, "compute_input": {"ns": "500"}}},
        {"name": "face_fusion", "version": "1", "inference_stats": {"success": {"count": "99"}}},  # an ensemble: not a stage
    ]
    stats = stage_statistics(model_stats, ("decode", "fuse", "postprocess"))
    assert stats["fuse"] == {"requests": 15, "executions": 12, "queue_ns": 1000, "compute_ns": 4500}
    assert "face_fusion" not in stats


def test_cores_busy_is_cpu_time_over_wall_time_and_cores():
    from facefuse.bench.photo import cores_busy

    assert cores_busy(cpu_ms=1800.0, seconds=1.0, cores=2) == 0.9  # 1.8 of 2 cores for a second
    assert cores_busy(cpu_ms=500.0, seconds=2.0, cores=1) == 0.25
    assert cores_busy(cpu_ms=100.0, seconds=0.0, cores=2) == 0.0  # no block ran


def test_cpu_ratios_compare_triton_with_the_baselines_stage_calls_and_its_whole_processes():
    from facefuse.bench.photo import WHOLE_PROCESSES, cpu_ratios

    cpu = {"triton": {"tritonserver": 2.0, "fuse_faces": 53.0, "total": 55.0},
           "baseline": {"fuse": 30.0, "total": 50.0, WHOLE_PROCESSES: 52.0}}
    assert cpu_ratios(cpu) == {"triton_vs_baseline_cpu_stages": 1.1, "triton_vs_baseline_cpu_whole_processes": 1.058}
