"""postprocess: fused crops pasted into the template, labelled, encoded."""

from __future__ import annotations

import numpy as np

from facefuse.contract import OUTPUT_FORMATS
from facefuse.errors import OptionError
from facefuse.vision.codec import encode_image
from facefuse.vision.compositing import draw_label, paste_faces


def postprocess(
    template_image: np.ndarray, fused_faces: np.ndarray, fused_masks: np.ndarray,
    template_affines: np.ndarray, add_label: bool, output_format: str, output_quality: int,
) -> bytes:
    if output_format not in OUTPUT_FORMATS:
        raise OptionError(f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    poster = paste_faces(template_image, fused_faces, fused_masks, template_affines)
    if add_label:
        poster = draw_label(poster)
    return encode_image(poster, output_format, output_quality)
