"""Real photos that ship inside installed packages, for sample templates and tests.

Nothing here downloads at run time. Sources:
- astronaut: scikit-image `data.astronaut()` (Eileen Collins, NASA, public domain);
- grace_hopper: matplotlib's `mpl-data/sample_data/grace_hopper.jpg` (public domain);
- coffee, rocket: scikit-image, photos without a face;
- group: `insightface/data/images/t1.jpg` (six faces) from the insightface wheel, which
  `make setup` fetches with `pip download --no-deps` into var/cache. No license is
  stated for it, so it is used at test time only and nothing derived from it is
  committed.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from facefuse.settings import get_settings

INSIGHTFACE_WHEEL_GLOB = "insightface-*.whl"
GROUP_PHOTO_MEMBER = "insightface/data/images/t1.jpg"


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


@functools.cache
def astronaut() -> bytes:
    from skimage import data

    return jpeg(data.astronaut())


@functools.cache
def grace_hopper() -> bytes:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return handle.read()


@functools.cache
def coffee() -> bytes:
    from skimage import data

    return jpeg(data.coffee())


@functools.cache
def rocket() -> bytes:
    from skimage import data

    return jpeg(data.rocket())


def wheel_cache_dir() -> Path:
    return get_settings().var_dir / "cache" / "wheels"


@functools.cache
def group() -> bytes:
    """Six faces in one photo (test-time only, see module docstring)."""
    wheels = sorted(wheel_cache_dir().glob(INSIGHTFACE_WHEEL_GLOB))
    if not wheels:
        raise FileNotFoundError(
            f"no {INSIGHTFACE_WHEEL_GLOB} in {wheel_cache_dir()}; fetch it with: "
            f"pip download --no-deps insightface==2.1 -d {wheel_cache_dir()}"
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read(GROUP_PHOTO_MEMBER)


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def stylize_comic(image: np.ndarray) -> np.ndarray:
    """A comic-page look: flattened colours and inked edges (OpenCV filters)."""
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    flat = bgr
    for _ in range(4):
        flat = cv2.bilateralFilter(flat, 9, 40, 7)
    flat = (flat // 32) * 32 + 16
    grey = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    inked = cv2.bitwise_and(flat, flat, mask=edges)
    return cv2.cvtColor(inked, cv2.COLOR_BGR2RGB)


def stylize_painting(image: np.ndarray) -> np.ndarray:
    """A painted look (OpenCV's edge-preserving stylization)."""
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    painted = cv2.stylization(bgr, sigma_s=45, sigma_r=0.35)
    return cv2.cvtColor(painted, cv2.COLOR_BGR2RGB)


def sample_templates() -> dict[str, tuple[bytes, str]]:
    """Template id -> (image bytes, where it comes from), registered at set-up."""
    templates = {
        "hopper-portrait": (grace_hopper(), "matplotlib sample data grace_hopper.jpg (public domain)"),
        "astronaut-poster": (astronaut(), "scikit-image data.astronaut() (NASA, public domain)"),
        "comic-astronaut": (
            _png(stylize_comic(rgb(astronaut()))),
            "scikit-image data.astronaut(), comic-styled by facefuse.samples.stylize_comic",
        ),
        "painted-hopper": (
            _png(stylize_painting(rgb(grace_hopper()))),
            "matplotlib grace_hopper.jpg, painted by facefuse.samples.stylize_painting",
        ),
    }
    try:
        templates["group-six"] = (group(), "insightface wheel data/images/t1.jpg (test-time only, not committed)")
    except FileNotFoundError:
        pass
    return templates
