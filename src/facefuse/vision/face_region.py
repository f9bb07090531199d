"""The inner face (brows to below the mouth) as an image region, from five keypoints.

Shared by the paste's detail matching and the eval's measures, so the product and its
measurement mean the same region.
"""

from __future__ import annotations

import cv2
import numpy as np

# Semi-axes of the ellipse around the five keypoints, in inter-ocular distances (across,
# along the face), turned with the eye line: brows to below the mouth, no hair, no background.
INNER_FACE_SEMI_AXES_IOD = (0.85, 0.8)


def inter_ocular(keypoints: np.ndarray) -> float:
    keypoints = np.asarray(keypoints, np.float64)
    return float(np.linalg.norm(keypoints[1] - keypoints[0]))


def inner_face_mask(shape: tuple[int, ...], keypoints: np.ndarray,
                    semi_axes_iod: tuple[float, float] = INNER_FACE_SEMI_AXES_IOD) -> np.ndarray:
    """The ellipse around the keypoints' centre, turned with the eye line (bool)."""
    keypoints = np.asarray(keypoints, np.float64)
    return keypoint_ellipses(shape, keypoints, keypoints.mean(axis=0, keepdims=True), semi_axes_iod)


def keypoint_ellipses(shape: tuple[int, ...], keypoints: np.ndarray, centres: np.ndarray,
                      semi_axes_iod: tuple[float, float]) -> np.ndarray:
    """Ellipses about each of `centres`, semi-axes in the keypoints' inter-ocular distances,
    turned with their eye line (bool)."""
    keypoints = np.asarray(keypoints, np.float64)
    iod = inter_ocular(keypoints)
    eye_line = keypoints[1] - keypoints[0]
    angle = float(np.degrees(np.arctan2(eye_line[1], eye_line[0])))
    axes = (max(1, int(round(semi_axes_iod[0] * iod))), max(1, int(round(semi_axes_iod[1] * iod))))
    mask = np.zeros(shape[:2], np.uint8)
    for centre in np.asarray(centres, np.float64):
        cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)
