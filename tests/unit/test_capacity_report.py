import csv
import json

from facefuse.capacity.report import steps_from_history, sustainable, write_report
from facefuse.capacity.triton_metrics import Sample, parse, stage_totals

HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%", "90%",
          "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count", "Total Failure Count"]


def history(path, levels):
    """levels: [(users, seconds, fuse rps, fuse_many rps, p50, p99)]"""
    t = 1_700_000_000
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for users, seconds, fuse, many, p50, p99 in levels:
            for _ in range(seconds):
                t += 1
                for name, rps in (("Fuse", fuse), ("FuseMany", many)):
                    writer.writerow([t, users, "grpc", name, rps, 0, p50, 0, 0, 0, 0, 0, 0, p99, 0, 0, 0, 0, 0])
                writer.writerow([t, users, "", "Aggregated", fuse + many, 0, p50, 0, 0, 0, 0, 0, 0, p99, 0, 0, 0, 0, 0])


def test_steps_count_posters_and_the_sustainable_step_respects_the_p99_target(tmp_path):
    path = tmp_path / "run_stats_history.csv"
    history(path, [(2, 10, 4.0, 1.0, 100, 200), (4, 10, 6.0, 2.0, 200, 900), (8, 10, 6.5, 2.0, 500, 3000)])
    steps = steps_from_history(list(csv.DictReader(open(path))), {"Fuse": 1, "FuseMany": 5})
    assert [s.users for s in steps] == [2, 4, 8]
    assert steps[0].posters_per_s == 9.0 and steps[1].posters_per_s == 16.0 and steps[2].posters_per_s == 16.5
    assert sustainable(steps, p99_target_ms=1000).users == 4
    assert sustainable(steps, p99_target_ms=100) is None


METRICS = """# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="fuse",version="1"}} {requests}
nv_inference_exec_count{{model="fuse",version="1"}} {executions}
nv_inference_queue_duration_us{{model="fuse",version="1"}} {queue}
nv_inference_compute_infer_duration_us{{model="fuse",version="1"}} {compute}
nv_gpu_utilization{{gpu_uuid="x"}} 0.5
"""


def test_triton_metrics_are_parsed_into_per_stage_deltas():
    before = parse(METRICS.format(requests=10, executions=10, queue=1000, compute=50000))
    after = parse(METRICS.format(requests=30, executions=20, queue=5000, compute=850000))
    totals = stage_totals([Sample(0, before), Sample(10, after)], ("fuse",))
    assert totals["fuse"] == {"requests": 20, "mean_batch": 2.0, "queue_ms_per_request": 0.2,
                              "compute_ms_per_request": 40.0, "busy_s": 0.8}


def test_a_report_is_written_with_plots_and_a_planner_json(tmp_path):
    path = tmp_path / "run_stats_history.csv"
    history(path, [(2, 8, 4.0, 1.0, 100, 200), (4, 8, 6.0, 2.0, 200, 400)])
    with open(tmp_path / "run_stats.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Type", "Name", "Request Count", "Failure Count"])
        writer.writerow(["grpc", "Fuse", 60, 0])
        writer.writerow(["grpc", "FuseMany", 10, 2])  # 8 answered x 5 posters
        writer.writerow(["", "Aggregated", 70, 2])
    samples = [Sample(0, parse(METRICS.format(requests=0, executions=0, queue=0, compute=0))),
               Sample(16, parse(METRICS.format(requests=100, executions=50, queue=1000, compute=4_000_000)))]
    result = write_report(tmp_path / "report", path, samples, 1000, {"Fuse": 1, "FuseMany": 5}, "cpu x2", 0,
                          {"fuse": 2}, "facefuse loadtest run")
    out = tmp_path / "report"
    for name in ("report.md", "capacity.json", "throughput_vs_users.png", "latency_over_time.png", "stage_times.png"):
        assert (out / name).is_file(), name
    assert result["capacity"]["sustainable_posters_per_s"] == 16.0
    assert result["bottleneck_stage"] == "fuse"
    # 4 s of fuse compute over 60 + 40 posters.
    assert json.loads((out / "capacity.json").read_text())["capacity"]["stage_compute_ms_per_poster"] == {"fuse": 40.0}
    assert "16 posters/s" in (out / "report.md").read_text()


def test_video_rows_stay_out_of_the_photo_latency_and_get_their_own_figures(tmp_path):
    from facefuse.capacity.report import video_figures

    path = tmp_path / "run_stats_history.csv"
    history(path, [(3, 8, 4.0, 1.0, 100, 200)])
    rows = list(csv.DictReader(open(path)))
    t = rows[-1]["Timestamp"]
    # A video job row with a 9 s p99, and the Aggregated row that mixes it in.
    video = dict(rows[-1], Name="Video job", **{"Requests/s": "0.1", "50%": "8000", "99%": "9000"})
    rows = [r for r in rows if not (r["Timestamp"] == t and r["Name"] == "Aggregated")]
    rows += [video, dict(rows[-1], Name="Aggregated", **{"99%": "9000"})]
    steps = steps_from_history(rows, {"Fuse": 1, "FuseMany": 5})
    assert steps[0].p99_ms == 200 and steps[0].requests_per_s == 5.0

    stats = tmp_path / "run_stats.csv"
    with open(stats, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Type", "Name", "Request Count", "Failure Count", "Average Response Time",
                         "Average Content Size", "50%", "99%"])
        writer.writerow(["grpc", "Fuse", 60, 0, 150, 1000, 140, 200])
        writer.writerow(["grpc", "Video submit", 3, 0, 20, 50, 20, 30])
        writer.writerow(["grpc", "Video job", 3, 1, 9000, 300000, 8000, 9000])
        # two jobs of 36 frames seen running 6 s each: 72 frames in 12 s.
        writer.writerow(["grpc", "Video job running", 2, 0, 6000, 36, 6000, 6000])
    figures = video_figures(stats)
    assert figures["jobs_submitted"] == 3 and figures["jobs_done"] == 2 and figures["jobs_failed"] == 1
    assert figures["frames_per_s"] == 6.0 and figures["frames_fused"] == 72
    assert figures["job_p99_ms"] == 9000


def test_a_run_without_video_users_has_no_video_figures(tmp_path):
    from facefuse.capacity.report import video_figures

    stats = tmp_path / "run_stats.csv"
    stats.write_text("Type,Name,Request Count,Failure Count\ngrpc,Fuse,60,0\n")
    assert video_figures(stats) is None
