"""Images to and from encoded bytes, for tests that build photos or read posters."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facefuse import samples


def encoded(rgb: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **kwargs)
    return out.getvalue()


rgb_of = samples.rgb
