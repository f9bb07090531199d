"""The campaign planner with videos: posters and frames add up on a replica."""

import pytest

from facefuse.capacity.planner import Measurement
from facefuse.capacity.video_plan import VideoMeasurement, campaign_plan

POSTERS = Measurement("bench", "cpu x2", 0, 20.0, 300.0, 900.0, {"fuse": 40.0}, {"fuse": 2})
VIDEOS = VideoMeasurement("video-bench", 10.0, 25.0)


def test_posters_and_video_frames_add_up_to_replica_seconds():
    # 1000 selfies x 5 posters = 5000 posters / (20 x 0.75) = 333.3 replica-seconds;
    # 1000 x 1 video x 15 s x 25 fps = 375 000 frames / (10 x 0.75) = 50 000 replica-seconds.
    plan = campaign_plan(1000, 600.0, 5, 1, POSTERS, VIDEOS)
    assert plan.poster_replica_s == pytest.approx(333.3, abs=0.1)
    assert plan.video_replica_s == pytest.approx(50000.0)
    assert plan.replicas == 84  # ceil(50333.3 / 600)
    assert plan.video_share > 0.99
    assert plan.video_job_s_on_one_replica == pytest.approx(37.5)


def test_without_videos_only_posters_count():
    plan = campaign_plan(1000, 600.0, 5, 0, POSTERS, VIDEOS)
    assert plan.video_frames == 0 and plan.replicas == 1


def test_a_video_measurement_without_throughput_is_refused():
    with pytest.raises(ValueError):
        campaign_plan(10, 60.0, 1, 1, POSTERS, VideoMeasurement("empty", 0.0, 25.0))


def test_rates_measured_together_in_a_load_test_are_not_added(tmp_path):
    import json

    from facefuse.capacity.video_plan import video_measurement_from_file

    report = tmp_path / "capacity.json"
    report.write_text(json.dumps({"capacity": {}, "video": {
        "frames_per_s": 10.0, "template_fps": 25.0, "job_p50_ms": 8000.0, "job_p99_ms": 12000.0}}))
    videos = video_measurement_from_file(report)
    assert videos.beside_photo_load and videos.job_p99_ms == 12000.0
    plan = campaign_plan(1000, 600.0, 5, 1, POSTERS, videos)
    # The replica gave 20 posters/s and 10 frames/s at once: the video need (50 000 s) decides.
    assert plan.replicas == 84 and plan.video_replica_s == pytest.approx(50000.0)
    # 3000 frames: 400 video replica-seconds beside 333 for posters; together one replica holds
    # both, measured apart their times add up to 733 s: two replicas.
    assert campaign_plan(1000, 600.0, 5, 0.008, POSTERS, videos).replicas == 1
    assert campaign_plan(1000, 600.0, 5, 0.008, POSTERS, VIDEOS).replicas == 2


def test_a_load_test_without_finished_video_jobs_is_refused(tmp_path):
    import json

    from facefuse.capacity.video_plan import video_measurement_from_file

    report = tmp_path / "capacity.json"
    report.write_text(json.dumps({"capacity": {}, "video": {
        "frames_per_s": 0.0, "template_fps": 25.0, "job_p50_ms": 0.0, "job_p99_ms": 0.0}}))
    with pytest.raises(ValueError, match="no video job finished"):
        video_measurement_from_file(report)
