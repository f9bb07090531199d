"""decode: encoded bytes -> RGB image and the letterboxed detector input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefuse.errors import ImageError, Reason
from facefuse.vision.codec import decode_image
from facefuse.vision.detection import letterbox


@dataclass(frozen=True)
class DecodeParams:
    detector_input_px: int
    max_image_side_px: int = 4096
    decode_target_side_px: int = 2048
    max_image_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_parameters(cls, p: dict[str, str]) -> "DecodeParams":
        """From a stage's config parameters (decode, the cpu profile's detect_faces)."""
        return cls(
            detector_input_px=int(p["detector_input_px"]),
            max_image_side_px=int(p["max_image_side_px"]),
            decode_target_side_px=int(p["decode_target_side_px"]),
            max_image_bytes=int(p["max_image_bytes"]),
        )


@dataclass(frozen=True)
class DecodedImage:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    detector_image: np.ndarray  # (S, S, 3) uint8 RGB, letterboxed
    letterbox_scale: float  # image pixels -> detector pixels


def decode(data: bytes, params: DecodeParams) -> DecodedImage:
    if len(data) > params.max_image_bytes:
        raise ImageError(
            f"the image is {len(data)} bytes; at most {params.max_image_bytes} are accepted",
            Reason.IMAGE_TOO_LARGE,
        )
    image = decode_image(data, params.max_image_side_px, params.decode_target_side_px)
    square, scale = letterbox(image, params.detector_input_px)
    return DecodedImage(image, square, scale)
