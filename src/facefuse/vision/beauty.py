"""Beauty options: what a caller may ask for, checked where the request enters.

The effects themselves are tensor code on the face mesh (facefuse_build.beauty_program,
served as the `beautify` model); this module only names them, holds their range and
turns a request's values into the tensor the model reads.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np

from facefuse.errors import OptionError

# In the order of the `beauty` tensor's four values.
EFFECTS = ("smoothing", "brightening", "slimming", "eye_enlarging")
BEAUTY_RANGE = (0.0, 100.0)
# A poster's fine detail is brought up to the template face's when it is pasted
# (facefuse.vision.detail); smoothing lowers that target, to this share at 100, or the
# paste would put back as grain what smoothing took away.
DETAIL_SHARE_AT_FULL_SMOOTHING = 0.15


def poster_detail_share(smoothing: float) -> float:
    """The share of the template face's detail a poster smoothed by `smoothing` (0..100) is matched to."""
    strength = min(max(float(smoothing), 0.0), 100.0) / 100.0 if smoothing == smoothing else 0.0
    return 1.0 - (1.0 - DETAIL_SHARE_AT_FULL_SMOOTHING) * strength


@dataclass(frozen=True)
class BeautyOptions:
    """Each 0..100; 0 (the default) leaves the image as it is."""

    smoothing: float = 0.0
    brightening: float = 0.0
    slimming: float = 0.0
    eye_enlarging: float = 0.0

    def validated(self) -> "BeautyOptions":
        low, high = BEAUTY_RANGE
        for f in fields(self):
            value = getattr(self, f.name)
            # NaN fails both comparisons, so it is refused too.
            if not low <= value <= high:
                raise OptionError(f"beauty {f.name} {value} is out of range; use {low:g}..{high:g} (0 is off)")
        return self

    @property
    def off(self) -> bool:
        return not any(astuple(self))

    def tensor(self) -> np.ndarray:
        """(1, 4) float32: one request's `beauty` input."""
        return np.array([astuple(self.validated())], np.float32)

    @classmethod
    def all_at(cls, value: float) -> "BeautyOptions":
        return cls(*(value,) * len(EFFECTS))
