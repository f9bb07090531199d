"""Following one face through a clip, and keeping its crop steady over time.

Pure functions on keypoints (unit-tested without models): which detection in a frame
is the tracked face, whether a face is turned too far to fuse, and temporal smoothing
of the five keypoints so the aligned crop, hence the fused face, does not jitter.
"""

from __future__ import annotations

import numpy as np

from facefuse.vision.detection import Detection

# A detection is the tracked face when it overlaps the face of the previous frame at
# least this much (intersection over union).
MIN_TRACK_IOU = 0.3
# |nose offset from the eye midpoint| / eye distance, along the eye line. About 0 for a
# frontal face; past this the far cheek is hidden and a fused face would smear.
MAX_TURN_RATIO = 0.35
# Gaussian smoothing of keypoints over time, in frames (centred: the whole clip is
# known at registration, so smoothing adds no lag).
SMOOTHING_SIGMA_FRAMES = 1.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def follow(detections: list[Detection], previous_box: np.ndarray | None, min_iou: float = MIN_TRACK_IOU) -> Detection | None:
    """The detection that continues the track, or None when the face is lost."""
    if previous_box is None or not detections:
        return None
    best = max(detections, key=lambda d: iou(d.box, previous_box))
    return best if iou(best.box, previous_box) >= min_iou else None


def turn_ratio(keypoints: np.ndarray) -> float:
    """How far the head is turned left or right (0 frontal), from the 5 keypoints."""
    left_eye, right_eye, nose = keypoints[0], keypoints[1], keypoints[2]
    axis = right_eye - left_eye
    distance = float(np.linalg.norm(axis))
    if distance < 1e-6:
        return float("inf")
    offset = float(np.dot(nose - (left_eye + right_eye) / 2, axis / distance))
    return abs(offset) / distance


def usable_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive usable frames."""
    runs, start = [], None
    for index, ok in enumerate(list(valid) + [False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            runs.append((start, index))
            start = None
    return runs


def smooth_over_time(values: np.ndarray, valid: np.ndarray, sigma_frames: float = SMOOTHING_SIGMA_FRAMES) -> np.ndarray:
    """Gaussian-smooth values (N, ...) along time within each run of valid frames.

    Runs are smoothed separately (a face lost in between is not averaged across), and
    the kernel is renormalised at run ends so the first and last frames do not drift
    toward zero. Invalid frames keep their values.
    """
    out = values.astype(np.float64).copy()
    if sigma_frames <= 0:
        return out.astype(values.dtype)
    radius = max(1, int(round(3 * sigma_frames)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_frames) ** 2)
    for start, stop in usable_runs(valid):
        run = values[start:stop].astype(np.float64)
        for i in range(stop - start):
            lo, hi = max(0, i - radius), min(stop - start, i + radius + 1)
            weights = kernel[lo - i + radius: hi - i + radius]
            out[start + i] = np.tensordot(weights / weights.sum(), run[lo:hi], axes=1)
    return out.astype(values.dtype)
