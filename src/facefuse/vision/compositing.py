"""Paste fused face crops back into the template and label the result."""

from __future__ import annotations

import cv2
import numpy as np

from facefuse.vision.alignment import invert_affine

LABEL_TEXT = "AI-synthesized"


def paste_faces(
    template_rgb: np.ndarray,
    fused_faces: np.ndarray,
    fused_masks: np.ndarray,
    affines: np.ndarray,
) -> np.ndarray:
    """Alpha-blend each fused crop into the template through its soft mask.

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
        poster[y0:y1, x0:x1] = cv2.blendLinear(face_roi, region, alpha, 255.0 - alpha)
    return poster


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
