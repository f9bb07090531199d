"""Size a campaign that gives every selfie N posters and M videos.

The model, stated so an SRE can check it:
- a replica's poster capacity is the measured sustainable posters/s at the p99 target
  (the photo planner's Measurement); its video capacity is the measured fused frames/s,
  from one of two sources:
  - `facefuse bench video` (frames alone): posters and frames use the same cores (or
    GPU), so on one replica their times add: busy replica-seconds = posters /
    posters_per_s + frames / frames_per_s;
  - a load test with a video share (`facefuse loadtest run --video-share S`): the
    replica delivered both rates at once, so replicas = the larger of posters /
    posters_per_s and frames / frames_per_s over the window. Exact when the campaign's
    posters-to-frames ratio is the run's; otherwise the spare rate of the other kind is
    not counted, which errs on the side of more replicas;
  both rates are planned at `target_utilization` of what was measured;
- photos keep priority over video frames in every worker, so the posters' p99 is what
  the photo planner measured as long as the replicas are not over-committed; videos are
  jobs and only have to be done within the window (plus their own latency, a clip's
  frames divided by the per-job rate).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from facefuse.capacity.planner import Measurement


@dataclass(frozen=True)
class VideoMeasurement:
    source: str
    frames_per_s: float  # one replica, fused frames end to end (Triton path)
    template_fps: float
    beside_photo_load: bool = False  # measured in a load test together with the posters
    job_p50_ms: float | None = None  # a job's latency under that photo load (queue included)
    job_p99_ms: float | None = None


@dataclass
class CampaignPlan:
    selfies: int
    window_s: float
    posters_per_selfie: float
    videos_per_selfie: float
    video_seconds: float
    posters: float
    video_frames: float
    poster_replica_s: float
    video_replica_s: float
    replicas: int
    video_share: float  # of the busy replica-seconds
    video_job_s_on_one_replica: float
    measurement: dict
    video_measurement: dict
    target_utilization: float


def video_measurement_from_file(path: Path) -> VideoMeasurement:
    """From a `facefuse bench video` JSON or a load-test capacity JSON with a video section."""
    data = json.loads(Path(path).read_text())
    if "video" in data and "capacity" in data:  # facefuse loadtest run --video-share
        video = data["video"]
        if video["frames_per_s"] <= 0 or video["template_fps"] <= 0:
            raise ValueError(f"{path}: no video job finished in the load test, so it holds no frames/s")
        return VideoMeasurement(str(path), float(video["frames_per_s"]), float(video["template_fps"]), True,
                                float(video["job_p50_ms"]), float(video["job_p99_ms"]))
    if "summary" not in data or "triton_frames_per_s" not in data["summary"]:
        raise ValueError(f"{path} is neither a `facefuse bench video` JSON nor a load-test JSON with video jobs")
    return VideoMeasurement(str(path), float(data["summary"]["triton_frames_per_s"]), float(data["template"]["fps"]))


def campaign_plan(selfies: int, window_s: float, posters_per_selfie: float, videos_per_selfie: float,
                  posters: Measurement, videos: VideoMeasurement, video_seconds: float = 15.0,
                  target_utilization: float = 0.75) -> CampaignPlan:
    if selfies <= 0 or window_s <= 0:
        raise ValueError("selfies and the window must be positive")
    if posters_per_selfie > 0 and posters.sustainable_posters_per_s <= 0:
        raise ValueError(f"{posters.source} holds no sustainable poster rate under the p99 target")
    if videos_per_selfie > 0 and videos.frames_per_s <= 0:
        raise ValueError(f"{videos.source} holds no measured frames/s")
    poster_count = selfies * posters_per_selfie
    frames = selfies * videos_per_selfie * video_seconds * videos.template_fps
    poster_s = poster_count / (posters.sustainable_posters_per_s * target_utilization) if poster_count else 0.0
    video_s = frames / (videos.frames_per_s * target_utilization) if frames else 0.0
    # Measured together, the two rates were delivered at once; measured apart, their times add.
    busy = max(poster_s, video_s) if videos.beside_photo_load else poster_s + video_s
    return CampaignPlan(
        selfies=selfies, window_s=window_s, posters_per_selfie=posters_per_selfie,
        videos_per_selfie=videos_per_selfie, video_seconds=video_seconds, posters=poster_count, video_frames=frames,
        poster_replica_s=round(poster_s, 1), video_replica_s=round(video_s, 1),
        replicas=max(1, math.ceil(busy / window_s)),
        video_share=round(video_s / (poster_s + video_s), 3) if poster_s + video_s else 0.0,
        video_job_s_on_one_replica=round(video_seconds * videos.template_fps / videos.frames_per_s, 1)
        if videos.frames_per_s else 0.0,
        measurement=asdict(posters), video_measurement=asdict(videos), target_utilization=target_utilization,
    )


def render(p: CampaignPlan) -> str:
    m, v = p.measurement, p.video_measurement
    if v["beside_photo_load"]:
        how = (f"Measured together in one load test, so a replica gives both rates at once: replicas = the larger "
               f"need. Video job latency under that photo load: p50 {v['job_p50_ms']:g} ms, p99 {v['job_p99_ms']:g} ms "
               f"(queue included).")
    else:
        how = "Measured apart, so posters and frames share each replica's compute and add up."
    return "\n".join([
        f"Campaign: {p.selfies} selfies in {p.window_s:g} s, each {p.posters_per_selfie:g} posters and "
        f"{p.videos_per_selfie:g} videos of {p.video_seconds:g} s: {p.posters:,.0f} posters and {p.video_frames:,.0f} video frames.",
        f"Measured: one replica on {m['device']} sustains {m['sustainable_posters_per_s']:g} posters/s "
        f"({m['source']}) and {v['frames_per_s']:g} fused frames/s ({v['source']}).",
        f"Busy replica-seconds at {p.target_utilization:.0%} utilization: posters {p.poster_replica_s:,.0f}, "
        f"videos {p.video_replica_s:,.0f} (videos are {p.video_share:.1%} of the work).",
        f"Triton replicas: {p.replicas}",
        f"One video job on one replica takes about {p.video_job_s_on_one_replica:g} s.",
        how,
        "Assumptions: photos keep priority, so posters keep their measured p99 while replicas are not "
        "over-committed; videos only need to finish within the window.",
    ]) + "\n"
