"""Paste fused face crops back into the template and label the result."""

from __future__ import annotations

import cv2
import numpy as np

from facefuse.vision.alignment import CANONICAL_KEYPOINTS, invert_affine
from facefuse.vision.face_region import inner_face_mask

LABEL_TEXT = "AI-synthesized"

# Detail matching at the poster's resolution (see match_face_detail). Bands are box
# means' differences in poster pixels: x less its 3x3 mean, and that less its 7x7 mean.
DETAIL_BANDS = ((1, 3), (3, 7))
# The fused face's detail in each band is raised toward the template face's, by at most
# this gain (never lowered); amplitudes below the coring level (grey levels of 255:
# noise, JPEG ripple) are not amplified.
MAX_DETAIL_GAIN = 5.0
DETAIL_CORING = 3.0
# Grain that makes up what the template face still has more of in the finest band,
# fixed per seed so a poster is reproducible.
GRAIN_SEED = 9
# Fewer inner-face pixels than this (a face a few pixels wide): nothing to match.
MIN_INNER_PX = 64
# A median absolute deviation over this is one standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826


def paste_faces(
    template_rgb: np.ndarray,
    fused_faces: np.ndarray,
    fused_masks: np.ndarray,
    affines: np.ndarray,
    match_detail: bool = True,
    grain_seed: int = GRAIN_SEED,
) -> np.ndarray:
    """Alpha-blend each fused crop into the template through its soft mask, with its
    fine detail matched to the template face's at the poster's resolution.

    affines map template pixels to crop pixels. Only the bounding box a crop covers is
    touched, and pixels where the mask is 0 keep the template's exact values.
    """
    poster = template_rgb.copy()
    height, width = poster.shape[:2]
    crop_px = fused_faces.shape[1]
    corners = np.array([[0, 0], [crop_px, 0], [0, crop_px], [crop_px, crop_px]], np.float32)
    for face, mask, affine in zip(fused_faces, fused_masks, affines):
        inverse = invert_affine(affine)
        in_image = corners @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.maximum(np.floor(in_image.min(axis=0)).astype(int), 0)
        x1 = min(int(np.ceil(in_image[:, 0].max())) + 1, width)
        y1 = min(int(np.ceil(in_image[:, 1].max())) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        # Crop -> template ROI: the template->crop affine, shifted to the ROI origin.
        to_crop = affine.astype(np.float64).copy()
        to_crop[:, 2] += to_crop[:, :2] @ np.array([x0, y0], np.float64)
        size = (x1 - x0, y1 - y0)
        # Bicubic for the face keeps its fine detail (see alignment.warp_to_crop); the
        # smooth mask needs no more than bilinear.
        face_roi = cv2.warpAffine(face, to_crop, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, to_crop, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = alpha.astype(np.float32)
        # One SIMD pass (face * a + template * (255 - a)) / 255, rounded: where the mask
        # is 0 the template's value comes back exactly.
        region = np.ascontiguousarray(poster[y0:y1, x0:x1])
        blended = cv2.blendLinear(face_roi, region, alpha, 255.0 - alpha)
        if match_detail:
            # The crop's canonical keypoints, in ROI pixels, give the inner face.
            from_crop = invert_affine(to_crop.astype(np.float32))
            keypoints = (CANONICAL_KEYPOINTS * crop_px) @ from_crop[:, :2].T + from_crop[:, 2]
            inner = inner_face_mask(region.shape, keypoints) & (alpha >= 250)
            blended = match_face_detail(blended, region, alpha, inner, grain_seed)
        poster[y0:y1, x0:x1] = blended
    return poster


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _band(grey: np.ndarray, finer: int, coarser: int) -> np.ndarray:
    fine = grey if finer == 1 else cv2.blur(grey, (finer, finer))
    return fine - cv2.blur(grey, (coarser, coarser))


def _typical(band: np.ndarray, inner: np.ndarray) -> float:
    """A band's typical amplitude over the inner face: the median absolute value, so the
    template's texture decides, not its few strong edges (a comic's inked outlines,
    Grace Hopper's glasses)."""
    return float(np.median(np.abs(band[inner])))


def match_face_detail(pasted: np.ndarray, template: np.ndarray, alpha: np.ndarray, inner: np.ndarray,
                      grain_seed: int = GRAIN_SEED) -> np.ndarray:
    """The pasted face's fine detail brought to the template face's, where it is seen.

    A photo's face is often enlarged into the poster, and the fuse's warp resamples it
    again, so it comes out softer than the template face around it and looks pasted on.
    Per band, the face's detail is scaled by the ratio of the template face's typical
    amplitude to its own (1 to MAX_DETAIL_GAIN, cored); then grain makes up what the
    template's finest band still has more of (a photo's film grain or sensor noise; a
    flat comic or painting has none to make up). Grey detail only: colours stay, and
    nothing of the template's features is carried over. alpha (0..255 float) weighs the
    change, so outside the mask the template stays exact.
    """
    if int(inner.sum()) < MIN_INNER_PX:
        return pasted
    face_grey, template_grey = _grey(pasted), _grey(template)
    extra = np.zeros_like(face_grey)
    for finer, coarser in DETAIL_BANDS:
        face_band, template_band = _band(face_grey, finer, coarser), _band(template_grey, finer, coarser)
        gain = np.clip(_typical(template_band, inner) / max(_typical(face_band, inner), 1e-3), 1.0, MAX_DETAIL_GAIN)
        squared = face_band * face_band
        extra += (gain - 1.0) * face_band * (squared / (squared + DETAIL_CORING**2))
    finest = DETAIL_BANDS[0]
    template_sigma = MAD_TO_SIGMA * _typical(_band(template_grey, *finest), inner)
    face_sigma = MAD_TO_SIGMA * _typical(_band(face_grey + extra, *finest), inner)
    # White noise keeps 8/9 of its variance in the finest band (x less its 3x3 mean).
    grain_sigma = np.sqrt(max(template_sigma**2 - face_sigma**2, 0.0) * 9.0 / 8.0)
    if grain_sigma > 0:
        extra += grain_sigma * np.random.default_rng(grain_seed).standard_normal(extra.shape, np.float32)
    if not extra.any():
        return pasted
    changed = pasted.astype(np.float32) + (extra * (alpha * (1.0 / 255.0)))[..., None]
    return np.clip(changed + 0.5, 0, 255).astype(np.uint8)


def draw_label(rgb: np.ndarray, text: str = LABEL_TEXT) -> np.ndarray:
    """Mark the picture as AI-synthesized: small white text on a dark band, bottom right."""
    height, width = rgb.shape[:2]
    scale = max(0.35, min(width, height) / 900)
    thickness = max(1, round(scale * 1.6))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    margin = max(4, round(text_h * 0.5))
    x1, y1 = width - margin, height - margin
    x0, y0 = max(0, x1 - text_w - 2 * margin), max(0, y1 - text_h - baseline - 2 * margin)
    out = rgb.copy()
    band = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (band * 0.45).astype(np.uint8)
    cv2.putText(
        out, text, (x0 + margin, y1 - margin - baseline), font, scale, (255, 255, 255),
        thickness, cv2.LINE_AA,
    )
    return out
