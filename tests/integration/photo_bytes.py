"""Images to and from encoded bytes, for tests that build photos or read posters."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encoded(rgb: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **kwargs)
    return out.getvalue()


def rgb_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
