"""Registering a video template: every frame analysed once with the serving models.

The face is found in the first frame that has a usable one (`face_index` numbers faces
left to right, as for photo templates), then followed by overlap from frame to frame.
Its five keypoints are smoothed over time before the crop affines are computed, and the
meshes of the steadied crops are smoothed too, so the fused face neither jitters nor
swims. Frames where the face is lost, too small, cut off or turned too far are marked
unusable: the fused video shows them as they are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from facefuse.contract import FACE_CROP_PX, MAX_FACES, MESH_POINTS
from facefuse.errors import FaceError, OptionError
from facefuse.local_pipeline import LocalPipeline
from facefuse.stages.align import detect
from facefuse.vision.alignment import crop_affine, warp_to_crop
from facefuse.vision.detection import check_face, faces_left_to_right, letterbox
from facefuse.video import media, tracking
from facefuse.templates import check_template_id
from facefuse.video.settings import VideoSettings, get_video_settings
from facefuse.video.templates import VideoTemplateStore

# Frames whose mesh network is less sure than this that a face is in the crop are unusable.
MIN_FACE_PRESENCE = 0.5
LANDMARK_BATCH = 16


def _keypoints_per_frame(pipeline: LocalPipeline, frames, count: int, face_index: int | None):
    """(N, 5, 2) keypoints of the tracked face and (N,) bool where it was found and usable."""
    keypoints = np.zeros((count, 5, 2), np.float32)
    found = np.zeros(count, bool)
    params = pipeline.align_params
    previous = None
    for number, frame in zip(range(count), frames):
        square, scale = letterbox(frame, pipeline.detector_px)
        box_deltas, face_probs, keypoint_deltas = pipeline.detector.run(None, {"detector_image": square[None]})
        detections = detect(box_deltas[0], face_probs[0], keypoint_deltas[0], scale, params)
        face = tracking.follow(detections, previous)
        if face is None and previous is None and detections:
            ordered = faces_left_to_right(detections, MAX_FACES)
            index = face_index or 0
            face = ordered[index] if index < len(ordered) else None
        elif face is None and detections and previous is not None:
            # Lost: take it up again where it was last seen (the nearest face).
            centre = (previous[:2] + previous[2:]) / 2
            face = min(detections, key=lambda d: float(np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - centre)))
        if face is None:
            continue
        previous = face.box
        try:
            check_face(face, frame.shape, params.min_face_px, params.max_face_outside_fraction)
        except FaceError:
            continue
        if tracking.turn_ratio(face.keypoints) > tracking.MAX_TURN_RATIO:
            continue
        keypoints[number], found[number] = face.keypoints, True
    return keypoints, found


def _mesh_batch(pipeline: LocalPipeline, batch, meshes: np.ndarray, usable: np.ndarray) -> None:
    numbers = np.array([n for n, _ in batch])
    crops = np.stack([c for _, c in batch])
    batch_meshes, presence = pipeline.landmarks.run(None, {"faces": crops[None]})
    meshes[numbers] = batch_meshes[0]
    usable[numbers[presence.reshape(-1) < MIN_FACE_PRESENCE]] = False


def analyze_clip(pipeline: LocalPipeline, clip, face_index: int | None, settings: VideoSettings):
    """(affines, meshes, usable, info) for every frame of the clip."""
    info = media.probe(clip)
    if info.duration_s > settings.max_template_s:
        raise OptionError(
            f"the clip lasts {info.duration_s:.1f} s; at most {settings.max_template_s:g} s are accepted "
            "(trim it, e.g. with --max-seconds)"
        )
    if max(info.width, info.height) > settings.max_template_side_px:
        raise OptionError(f"the clip is {info.width}x{info.height}; at most {settings.max_template_side_px} px a side")
    # Two passes over the decoded clip (tracking, then crops of the steadied track), so
    # that a long HD clip is never held in memory whole.
    count = info.frame_count
    keypoints, usable = _keypoints_per_frame(pipeline, media.read_frames(clip), count, face_index)
    if not usable.any():
        raise FaceError("no frame of the clip holds a usable face (none found, too small, cut off or turned away)")
    keypoints = tracking.smooth_over_time(keypoints, usable)
    affines = np.zeros((count, 2, 3), np.float32)
    meshes = np.zeros((count, MESH_POINTS, 3), np.float32)
    for number in np.flatnonzero(usable):
        affines[number] = crop_affine(keypoints[number], FACE_CROP_PX)
    batch: list[tuple[int, np.ndarray]] = []
    for number, frame in zip(range(count), media.read_frames(clip)):
        if usable[number]:
            batch.append((number, warp_to_crop(frame, affines[number], FACE_CROP_PX)))
        if batch and (len(batch) == LANDMARK_BATCH or number == count - 1):
            _mesh_batch(pipeline, batch, meshes, usable)
            batch = []
    if batch:
        _mesh_batch(pipeline, batch, meshes, usable)
    meshes = tracking.smooth_over_time(meshes, usable)
    summary = {
        "width": info.width, "height": info.height, "fps": info.fps, "frame_count": count,
        "duration_s": round(count / info.fps, 3), "usable_frames": int(usable.sum()), "has_audio": info.has_audio,
    }
    return affines, meshes, usable, summary


def register_video(pipeline: LocalPipeline, store: VideoTemplateStore, template_id: str, clip, face_index: int | None = None,
                   max_seconds: float | None = None, source: str = "", settings: VideoSettings | None = None):
    """Analyse a clip (its first max_seconds, re-encoded, when given) and store it as
    the next version of template_id; returns (version, info)."""
    settings = settings or get_video_settings()
    check_template_id(template_id)
    clip = Path(clip)
    source = source or str(clip)
    with tempfile.TemporaryDirectory(prefix="facefuse-clip-") as scratch:
        if max_seconds is not None and media.probe(clip).duration_s > max_seconds:
            trimmed = Path(scratch) / "clip.mp4"
            media.trim(clip, trimmed, max_seconds)
            clip = trimmed
        affines, meshes, usable, info = analyze_clip(pipeline, clip, face_index, settings)
        info["source"] = source
        version = store.add(template_id, clip, affines, meshes, usable, info)
    return version, {**info, "version": version}
