"""Paste fused face crops back into the template and label the result."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from facefuse.vision.alignment import face_roi
from facefuse.vision.detail import DETAIL_BANDS, GRAIN_SEED, TemplateFaceDetail, match_template_detail, template_face_detail

LABEL_TEXT = "AI-synthesized"


def paste_faces(
    template_rgb: np.ndarray,
    fused_faces: np.ndarray,
    fused_masks: np.ndarray,
    affines: np.ndarray,
    match_detail: bool = True,
    grain_seed: int = GRAIN_SEED,
    details: list[TemplateFaceDetail | None] | None = None,
    detail_share: float = 1.0,
) -> np.ndarray:
    """Alpha-blend each fused crop into the template through its soft mask, with its
    fine detail matched to the template face's at the poster's resolution.

    affines map template pixels to crop pixels. Only the bounding box a crop covers is
    touched, and pixels where the mask is 0 keep the template's exact values. details:
    the template faces' statistics if the caller keeps them (measured here otherwise).
    detail_share: the share of the template's detail to match (beauty smoothing lowers it).
    """
    poster = template_rgb.copy()
    crop_px = fused_faces.shape[1]
    for index, (face, mask, affine) in enumerate(zip(fused_faces, fused_masks, affines)):
        roi = face_roi(poster.shape, affine, crop_px)
        if roi is None:
            continue
        # The smooth mask needs no more than bilinear; the face is warped only where the
        # mask reaches (the crop's corners are the template's anyway).
        alpha = cv2.warpAffine(mask, roi.to_crop, roi.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        rows, cols = _changed_box(alpha)
        if rows.stop <= rows.start:
            continue
        alpha = alpha[rows, cols].astype(np.float32)
        to_box = roi.to_crop.copy()
        to_box[:, 2] += to_box[:, :2] @ np.array([cols.start, rows.start], np.float64)
        # Bicubic for the face keeps its fine detail (see alignment.warp_to_crop).
        face_pixels = cv2.warpAffine(face, to_box, (alpha.shape[1], alpha.shape[0]),
                                     flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        # One SIMD pass (face * a + template * (255 - a)) / 255, rounded: where the mask
        # is 0 the template's value comes back exactly.
        y0, x0 = roi.y0 + rows.start, roi.x0 + cols.start
        region = np.ascontiguousarray(poster[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]])
        blended = cv2.blendLinear(face_pixels, region, alpha, 255.0 - alpha)
        if match_detail:
            detail = details[index] if details is not None else template_face_detail(template_rgb, affine, crop_px)
            if detail is not None:
                detail = detail.window(rows, cols)
                if detail_share < 1.0:
                    detail = dataclasses.replace(detail, typical=tuple(t * detail_share for t in detail.typical))
                blended = match_template_detail(blended, alpha * detail.face, detail.inner, detail, grain_seed)
        poster[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]] = blended
    return poster


def _changed_box(alpha: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of alpha > 0 (empty slices if none), plus the widest detail
    band's reach, so the bands see past the mask's edge."""
    rows, cols = np.nonzero(alpha.max(axis=1))[0], np.nonzero(alpha.max(axis=0))[0]
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    reach = DETAIL_BANDS[-1][1]
    return (slice(max(rows[0] - reach, 0), rows[-1] + reach + 1), slice(max(cols[0] - reach, 0), cols[-1] + reach + 1))


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
