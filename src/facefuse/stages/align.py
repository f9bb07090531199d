"""align: raw detector outputs -> the chosen face, gated, cut into the canonical crop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import cv2

from facefuse.contract import FACE_CROP_PX
from facefuse.vision.alignment import crop_affine, warp_to_crop
from facefuse.vision.detection import (
    Detection, check_face, choose_main_face, decode_detections, letterbox, merge_tile_detections, tiles,
)


@dataclass(frozen=True)
class AlignParams:
    detector_input_px: int
    score_threshold: float = 0.6
    nms_iou: float = 0.4
    min_face_px: int = 34
    max_face_outside_fraction: float = 0.12
    # When the first pass finds no face: the detector again on a tiles x tiles grid of
    # the photo (0 or 1: no second pass). Only photos larger than the detector's input
    # by more than this factor are tiled (a smaller one would be enlarged, not zoomed).
    second_pass_tiles: int = 3
    min_tiling_scale: float = 1.5

    @classmethod
    def from_parameters(cls, p: dict[str, str]) -> "AlignParams":
        """From a stage's config parameters (align, beauty_faces, the cpu profile's detect_faces)."""
        return cls(
            detector_input_px=int(p["detector_input_px"]),
            score_threshold=float(p["score_threshold"]),
            nms_iou=float(p["nms_iou"]),
            min_face_px=int(p["min_face_px"]),
            max_face_outside_fraction=float(p["max_face_outside_fraction"]),
            second_pass_tiles=int(p.get("second_pass_tiles", "0")),
        )


# The detector on a batch of letterboxed images (N, S, S, 3) uint8 -> its raw outputs,
# (box_deltas, face_probs, keypoint_deltas) with a leading N: Triton's face_detector
# through BLS in the align stage, the ONNX session in LocalPipeline.
DetectBatch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class AlignedFaces:
    faces: np.ndarray  # (K, F, F, 3) uint8
    affines: np.ndarray  # (K, 2, 3) image -> crop
    boxes: np.ndarray  # (K, 5) x0, y0, x1, y1, score in image pixels


def detect(
    box_deltas: np.ndarray, face_probs: np.ndarray, keypoint_deltas: np.ndarray,
    letterbox_scale: float, params: AlignParams,
) -> list[Detection]:
    return decode_detections(
        box_deltas, face_probs, keypoint_deltas, params.detector_input_px, letterbox_scale,
        params.score_threshold, params.nms_iou,
    )


def align_faces(image: np.ndarray, detections: list[Detection], interpolation: int = cv2.INTER_LINEAR) -> AlignedFaces:
    """interpolation: bilinear per request; templates (analysed once) bicubic."""
    affines = np.stack([crop_affine(d.keypoints, FACE_CROP_PX) for d in detections])
    faces = np.stack([warp_to_crop(image, a, FACE_CROP_PX, interpolation) for a in affines])
    boxes = np.stack([np.append(d.box, d.score) for d in detections]).astype(np.float32)
    return AlignedFaces(faces, affines, boxes)


def detect_in_tiles(image: np.ndarray, params: AlignParams, detect_batch: DetectBatch) -> list[Detection]:
    """The second pass: the detector on overlapping tiles of the photo, merged."""
    if params.second_pass_tiles < 2 or max(image.shape[:2]) < params.min_tiling_scale * params.detector_input_px:
        return []
    cover = tiles(image.shape, params.second_pass_tiles)
    boxed = [letterbox(image[y0:y1, x0:x1], params.detector_input_px) for x0, y0, x1, y1 in cover]
    box_deltas, face_probs, keypoint_deltas = detect_batch(np.stack([square for square, _ in boxed]))
    per_tile = [
        detect(box_deltas[i], face_probs[i], keypoint_deltas[i], scale, params) for i, (_, scale) in enumerate(boxed)
    ]
    return merge_tile_detections(per_tile, [(x0, y0) for x0, y0, _, _ in cover], params.nms_iou)


def align_main_face(
    image: np.ndarray, box_deltas: np.ndarray, face_probs: np.ndarray, keypoint_deltas: np.ndarray,
    letterbox_scale: float, params: AlignParams, detect_batch: DetectBatch | None = None,
) -> AlignedFaces:
    """The user side: one face (K=1), the photo's subject, after the quality gates.
    detect_batch: the detector, for a second pass on tiles when the first finds no face
    (a small face in a large photo); without it there is none."""
    detections = detect(box_deltas, face_probs, keypoint_deltas, letterbox_scale, params)
    if not detections and detect_batch is not None:
        detections = detect_in_tiles(image, params, detect_batch)
    face = choose_main_face(detections, image.shape)
    check_face(face, image.shape, params.min_face_px, params.max_face_outside_fraction)
    return align_faces(image, [face])
