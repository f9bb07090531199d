"""The eval's image measures, pure numpy/OpenCV (unit-tested without models).

Conventions: images are RGB uint8; keypoints are the detector's five (left eye, right
eye, nose tip, left and right mouth corner) in image pixels; distances are in
inter-ocular units (the distance between the two eye keypoints).

- inner face: an ellipse around the five keypoints (`facefuse.vision.face_region`):
  brows to below the mouth, no hair, no background.
- sharpness: mean squared Laplacian of the grey image over the inner face, poster over
  template (same region, the template face's keypoints: the user's face is placed
  where the template's was). 1 is as sharp as the template's own face.
  The template's own inner face holds its content too (Grace Hopper's glasses, the
  comic's inked lines), which a fused face at fuse_degree 100 does not keep, so:
- sharpness vs user: the same energy, poster over the user's face pasted by a plain
  similarity warp onto the template's keypoints (what a perfect paste at this
  resolution would give): the detail the fusion itself loses, whatever the template.
- ghosting: mean distance of the five keypoints re-detected on the poster from the
  template face's keypoints, in inter-ocular units. Doubled or smeared features move
  the detector's keypoints; a clean fusion at profile_degree 0 leaves them in place,
  and a shape change by profile_degree moves them by the shape difference only.
- seams: the region the fusion changed is where a lossless (PNG) poster differs from
  the template (outside its mask the poster is the template bit for bit); its border,
  widened by 0.05 inter-ocular distances (at least 2 px) to each side, is where a
  seam would show. Mean squared gradient there, poster over template: 1 is no added
  edge, above 1 an edge the paste added, below 1 a smudged (smoother) ring.
"""

from __future__ import annotations

import cv2
import numpy as np

from facefuse.vision.face_region import inner_face_mask, inter_ocular

SEAM_BAND_IOD = 0.05
CHANGED_LEVELS = 2  # a pixel differing by more than this (any channel) was changed


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def laplacian_energy(rgb: np.ndarray, mask: np.ndarray) -> float:
    laplacian = cv2.Laplacian(_grey(rgb), cv2.CV_32F, ksize=3)
    return float(np.mean(laplacian[mask] ** 2)) if mask.any() else 0.0


def gradient_energy(rgb: np.ndarray, mask: np.ndarray) -> float:
    grey = _grey(rgb)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean((gx ** 2 + gy ** 2)[mask])) if mask.any() else 0.0


def sharpness_ratio(poster: np.ndarray, template: np.ndarray, template_keypoints: np.ndarray) -> float:
    mask = inner_face_mask(template.shape, template_keypoints)
    return laplacian_energy(poster, mask) / max(laplacian_energy(template, mask), 1e-6)


def similarity_paste(source: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray,
                     shape: tuple[int, ...]) -> np.ndarray:
    """The source image moved by the similarity that takes its keypoints onto the target's."""
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(source_keypoints, np.float64),
                                            np.asarray(target_keypoints, np.float64), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate keypoints")
    # Shrinking aliases with bilinear sampling: area-average first, like the serving crops.
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        source = cv2.GaussianBlur(source, (0, 0), 0.3 / scale)
    return cv2.warpAffine(source, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sharpness_vs_source(poster: np.ndarray, source: np.ndarray, source_keypoints: np.ndarray,
                        template_keypoints: np.ndarray) -> float:
    mask = inner_face_mask(poster.shape, template_keypoints)
    pasted = similarity_paste(source, source_keypoints, template_keypoints, poster.shape)
    return laplacian_energy(poster, mask) / max(laplacian_energy(pasted, mask), 1e-6)


def keypoint_error(found: np.ndarray, expected: np.ndarray) -> float:
    """Mean keypoint distance in inter-ocular units of the expected face."""
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    return float(np.mean(np.linalg.norm(found - expected, axis=1)) / max(inter_ocular(expected), 1e-6))


def changed_region(poster: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Where the poster differs from the template: the largest changed blob, holes filled."""
    changed = (np.abs(poster.astype(np.int16) - template.astype(np.int16)).max(axis=2) > CHANGED_LEVELS).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed)
    if count < 2:
        return np.zeros(changed.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(blob)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return filled.astype(bool)


def border_band(region: np.ndarray, half_width_px: float) -> np.ndarray:
    size = 2 * max(2, int(round(half_width_px))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    region = region.astype(np.uint8)
    return (cv2.dilate(region, kernel) > 0) & ~(cv2.erode(region, kernel) > 0)


def seam_ratio(poster: np.ndarray, template: np.ndarray, template_keypoints: np.ndarray) -> float | None:
    """None when the poster does not differ from the template (nothing was pasted)."""
    region = changed_region(poster, template)
    if not region.any():
        return None
    band = border_band(region, SEAM_BAND_IOD * inter_ocular(template_keypoints))
    return gradient_energy(poster, band) / max(gradient_energy(template, band), 1e-6)


def share(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def summary(values: list[float | None]) -> dict:
    """Median, min, max and count of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(present), "median": round(float(np.median(present)), 3),
            "min": round(float(np.min(present)), 3), "max": round(float(np.max(present)), 3)}
