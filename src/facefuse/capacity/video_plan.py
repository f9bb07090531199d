"""Size a campaign that gives every selfie N posters and M videos.

The model, stated so an SRE can check it:
- a replica's poster capacity is the measured sustainable posters/s at the p99 target
  (the photo planner's Measurement); its video capacity is the measured fused frames/s
  of `facefuse bench video` on the same kind of replica;
- posters and video frames use the same cores (or GPU), so on one replica their times
  add: busy replica-seconds = posters / posters_per_s + frames / frames_per_s, and both
  rates are planned at `target_utilization` of what was measured;
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
    data = json.loads(Path(path).read_text())
    if "summary" not in data or "triton_frames_per_s" not in data["summary"]:
        raise ValueError(f"{path} is not a `facefuse bench video` JSON")
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
    busy = poster_s + video_s
    return CampaignPlan(
        selfies=selfies, window_s=window_s, posters_per_selfie=posters_per_selfie,
        videos_per_selfie=videos_per_selfie, video_seconds=video_seconds, posters=poster_count, video_frames=frames,
        poster_replica_s=round(poster_s, 1), video_replica_s=round(video_s, 1),
        replicas=max(1, math.ceil(busy / window_s)), video_share=round(video_s / busy, 3) if busy else 0.0,
        video_job_s_on_one_replica=round(video_seconds * videos.template_fps / videos.frames_per_s, 1)
        if videos.frames_per_s else 0.0,
        measurement=asdict(posters), video_measurement=asdict(videos), target_utilization=target_utilization,
    )


def render(p: CampaignPlan) -> str:
    m, v = p.measurement, p.video_measurement
    return "\n".join([
        f"Campaign: {p.selfies} selfies in {p.window_s:g} s, each {p.posters_per_selfie:g} posters and "
        f"{p.videos_per_selfie:g} videos of {p.video_seconds:g} s: {p.posters:,.0f} posters and {p.video_frames:,.0f} video frames.",
        f"Measured: one replica on {m['device']} sustains {m['sustainable_posters_per_s']:g} posters/s "
        f"({m['source']}) and {v['frames_per_s']:g} fused frames/s ({v['source']}).",
        f"Busy replica-seconds at {p.target_utilization:.0%} utilization: posters {p.poster_replica_s:,.0f}, "
        f"videos {p.video_replica_s:,.0f} (videos are {p.video_share:.1%} of the work).",
        f"Triton replicas: {p.replicas}",
        f"One video job on one replica takes about {p.video_job_s_on_one_replica:g} s.",
        "Assumptions: posters and frames share each replica's compute and add up; photos keep priority, so "
        "posters keep their measured p99 while replicas are not over-committed; videos only need to finish "
        "within the window.",
    ]) + "\n"
