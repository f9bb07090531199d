"""RetinaFace post-processing: priors, box decoding, NMS, face choice and quality gates."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from facefuse.errors import FaceError, Reason

# RetinaFace-MobileNet0.25 anchor layout (Pytorch_Retinaface `cfg_mnet`).
PRIOR_STRIDES = (8, 16, 32)
PRIOR_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    score: float
    # (5, 2) as seen in the image: left eye, right eye, nose tip, left and right mouth corner.
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def letterbox(rgb: np.ndarray, size_px: int) -> tuple[np.ndarray, float]:
    """Fit the image into a size_px square (top-left aligned, black padding).

    Returns the square uint8 image and the scale from image to square pixels.
    """
    height, width = rgb.shape[:2]
    scale = size_px / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    square = np.zeros((size_px, size_px, 3), dtype=np.uint8)
    square[:new_h, :new_w] = resized
    return square, scale


@functools.lru_cache(maxsize=4)
def prior_boxes(size_px: int) -> np.ndarray:
    """Anchors as (cx, cy, w, h) in units of the input side, in the network's output order."""
    priors = []
    for stride, min_sizes in zip(PRIOR_STRIDES, PRIOR_MIN_SIZES):
        cells = -(-size_px // stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centers = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride / size_px
        for_cell = [
            np.concatenate([centers, np.full((len(centers), 2), m / size_px)], axis=1)
            for m in min_sizes
        ]
        # Anchors of one cell are adjacent: (cell0 size0, cell0 size1, cell1 size0, ...).
        priors.append(np.stack(for_cell, axis=1).reshape(-1, 4))
    result = np.concatenate(priors).astype(np.float32)
    result.setflags(write=False)
    return result


def decode_detections(
    box_deltas: np.ndarray,
    face_probs: np.ndarray,
    keypoint_deltas: np.ndarray,
    input_px: int,
    image_scale: float,
    score_threshold: float,
    nms_iou: float,
) -> list[Detection]:
    """Raw per-prior outputs of one image -> detections in image pixels, best first."""
    keep = np.flatnonzero(face_probs > score_threshold)
    if keep.size == 0:
        return []
    priors = prior_boxes(input_px)[keep]
    deltas = box_deltas[keep]
    centers = priors[:, :2] + deltas[:, :2] * CENTER_VARIANCE * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(deltas[:, 2:] * SIZE_VARIANCE)
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    keypoints = keypoint_deltas[keep].reshape(-1, 5, 2)
    keypoints = priors[:, None, :2] + keypoints * CENTER_VARIANCE * priors[:, None, 2:]
    to_image = input_px / image_scale
    boxes *= to_image
    keypoints *= to_image
    scores = face_probs[keep]

    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, nms_iou)
    order = sorted(np.asarray(kept).reshape(-1).tolist(), key=lambda i: -scores[i])
    return [Detection(boxes[i], float(scores[i]), keypoints[i]) for i in order]


def choose_main_face(detections: list[Detection], image_shape: tuple[int, ...]) -> Detection:
    """The selfie's subject: the largest face, preferring faces near the centre.

    Selfies cut from group shots often hold slices of neighbours at the borders; a
    neighbour nearer the edge loses to the subject even when slightly larger.
    """
    if not detections:
        raise FaceError("no face was found in the photo; send a photo with one clearly visible face")
    height, width = image_shape[:2]
    center = np.array([width / 2, height / 2])
    half_diagonal = float(np.hypot(width, height)) / 2

    def prominence(det: Detection) -> float:
        face_center = (det.box[:2] + det.box[2:]) / 2
        offset = float(np.linalg.norm(face_center - center)) / half_diagonal
        return det.width * det.height * (1.0 - 0.5 * offset)

    return max(detections, key=prominence)


def check_face(
    det: Detection,
    image_shape: tuple[int, ...],
    min_face_px: int,
    max_outside_fraction: float,
) -> None:
    """Refuse faces too small to fuse or cut off by the image border."""
    height, width = image_shape[:2]
    side = min(det.width, det.height)
    if side < min_face_px:
        raise FaceError(
            f"the face is {det.width:.0f}x{det.height:.0f} px; it must be at least "
            f"{min_face_px} px on each side (send a closer or larger photo)",
            Reason.FACE_TOO_SMALL,
        )
    x0, y0, x1, y1 = det.box
    inside_w = max(0.0, min(x1, width) - max(x0, 0.0))
    inside_h = max(0.0, min(y1, height) - max(y0, 0.0))
    outside = 1.0 - (inside_w * inside_h) / max(det.width * det.height, 1e-6)
    keypoints_inside = bool(
        np.all((det.keypoints >= 0) & (det.keypoints < np.array([width, height])))
    )
    if outside > max_outside_fraction or not keypoints_inside:
        raise FaceError(
            f"{outside:.0%} of the face lies outside the image; send a photo with the whole face in frame",
            Reason.FACE_EXCEEDS_BORDER,
        )


def faces_left_to_right(detections: list[Detection], max_faces: int) -> list[Detection]:
    """Template faces, numbered left to right: the largest max_faces, then ordered by x."""
    largest = sorted(detections, key=lambda d: -d.width * d.height)[:max_faces]
    return sorted(largest, key=lambda d: float(d.box[0] + d.box[2]))


# Second detector pass (see tiles): tiles overlap by this share of a tile, so a face on a
# seam is whole in one of them.
TILE_OVERLAP = 0.25


def tiles(image_shape: tuple[int, ...], grid: int) -> list[tuple[int, int, int, int]]:
    """A grid x grid cover of the image by overlapping square-ish tiles (x0, y0, x1, y1).

    The first pass sees the whole photo letterboxed to the detector's input, so a face
    that is small in a large photo (a lecture hall, a friend far away) shrinks below
    what the detector finds; each tile is letterboxed on its own, `grid` times larger.
    """
    height, width = image_shape[:2]
    boxes = []
    for axis_size in (width, height):
        tile = int(np.ceil(axis_size / (grid - (grid - 1) * TILE_OVERLAP)))
        starts = np.linspace(0, axis_size - tile, grid).round().astype(int) if grid > 1 else np.array([0])
        boxes.append([(int(s), int(min(s + tile, axis_size))) for s in starts])
    return [(x0, y0, x1, y1) for y0, y1 in boxes[1] for x0, x1 in boxes[0]]


def merge_tile_detections(per_tile: list[list[Detection]], origins: list[tuple[int, int]], nms_iou: float) -> list[Detection]:
    """Detections of each tile (in tile pixels) moved to image pixels, duplicates from
    overlapping tiles removed by NMS; best first."""
    moved = [
        Detection(d.box + np.array([x0, y0, x0, y0], np.float32), d.score, d.keypoints + np.array([x0, y0], np.float32))
        for found, (x0, y0) in zip(per_tile, origins) for d in found
    ]
    if not moved:
        return []
    xywh = [[float(d.box[0]), float(d.box[1]), d.width, d.height] for d in moved]
    kept = cv2.dnn.NMSBoxes(xywh, [d.score for d in moved], 0.0, nms_iou)
    return sorted((moved[i] for i in np.asarray(kept).reshape(-1)), key=lambda d: -d.score)
