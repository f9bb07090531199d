"""postprocess: fused crops pasted into the template, labelled, encoded."""

from __future__ import annotations

import numpy as np

from facefuse.vision.codec import encode_image
from facefuse.vision.compositing import draw_label, paste_faces
from facefuse.vision.detail import TemplateFaceDetail


def postprocess(
    template_image: np.ndarray, fused_faces: np.ndarray, fused_masks: np.ndarray,
    template_affines: np.ndarray, add_label: bool, output_format: str, output_quality: int,
    details: list[TemplateFaceDetail | None] | None = None, detail_share: float = 1.0,
) -> bytes:
    """Unknown formats and qualities out of range raise OptionError from the encoder.
    details: the template faces' detail statistics, if the caller keeps them;
    detail_share: how much of their detail to match (vision.beauty.poster_detail_share)."""
    poster = paste_faces(template_image, fused_faces, fused_masks, template_affines, details=details,
                         detail_share=detail_share)
    if add_label:
        poster = draw_label(poster)
    return encode_image(poster, output_format, output_quality)
