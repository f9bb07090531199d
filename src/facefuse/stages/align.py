"""align: raw detector outputs -> the chosen face, gated, cut into the canonical crop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import cv2

from facefuse.contract import FACE_CROP_PX
from facefuse.vision.alignment import crop_affine, warp_to_crop
from facefuse.vision.detection import Detection, check_face, choose_main_face, decode_detections


@dataclass(frozen=True)
class AlignParams:
    detector_input_px: int
    score_threshold: float = 0.6
    nms_iou: float = 0.4
    min_face_px: int = 34
    max_face_outside_fraction: float = 0.12


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


def align_main_face(
    image: np.ndarray, box_deltas: np.ndarray, face_probs: np.ndarray, keypoint_deltas: np.ndarray,
    letterbox_scale: float, params: AlignParams,
) -> AlignedFaces:
    """The user side: one face (K=1), the photo's subject, after the quality gates."""
    detections = detect(box_deltas, face_probs, keypoint_deltas, letterbox_scale, params)
    face = choose_main_face(detections, image.shape)
    check_face(face, image.shape, params.min_face_px, params.max_face_outside_fraction)
    return align_faces(image, [face])
