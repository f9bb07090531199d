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
from facefuse.templates import TemplateStore

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


# Grace Hopper's glasses end on her face's outline at the temples, where the fused face
# stops: their ends (black rims, a blue-grey hinge, a white glint) stayed beside every
# user's face and failed most of her posters ("glasses arm at the right temple"). The
# sample template is retouched as a campaign's designer would retouch it, in these boxes
# of the photo (x0, y0, x1, y1 in pixels). The rims across her brows stay: the fused face
# covers them.
HOPPER_GLASSES_ENDS = ((326, 158, 368, 197), (172, 168, 200, 198))
# Painted out in the boxes: the dark (the rims), the bright (the glint) and what is at least
# as blue as red (the hinge; her skin is orange), luma 0..255 and red minus blue levels;
# not the blue background or the navy hat beside them (blue over red by more than
# BACKDROP_BLUE_OVER_RED), which would be smeared into her temple.
RIM_LUMA, GLINT_LUMA, HINGE_RED_OVER_BLUE, BACKDROP_BLUE_OVER_RED = 75, 185, 15, 35
# Grown by this many pixels so no half-dark edge is left to be spread by the inpainting.
RETOUCH_GROW_PX = 2
RETOUCH_RADIUS_PX = 3
# Inpainting alone leaves a smooth patch where hair and skin meet (rated worse than the
# hinge it replaced, docs/quality.md#glasses-ends-painted-out): the patch gets the fine
# texture (above a Gaussian of this sigma) of the pixels this far below it, her temple's
# hair and skin below the rims.
TEXTURE_SIGMA_PX = 2.0
TEXTURE_FROM_BELOW_PX = 22


def painted_out(image: np.ndarray, boxes: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    """image (RGB) with the glasses' pixels in `boxes` (see HOPPER_GLASSES_ENDS) painted out
    from their surroundings (OpenCV's Telea inpainting), textured like the skin below."""
    import cv2

    red, blue = image[..., 0].astype(np.int32), image[..., 2].astype(np.int32)
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.int32)
    backdrop = blue - red > BACKDROP_BLUE_OVER_RED
    glasses = ((luma < RIM_LUMA) | (luma > GLINT_LUMA) | (blue >= red - HINGE_RED_OVER_BLUE)) & ~backdrop
    in_boxes = np.zeros(image.shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        in_boxes[y0:y1, x0:x1] = True
    mask = cv2.dilate((glasses & in_boxes).astype(np.uint8) * 255, np.ones((3, 3), np.uint8),
                      iterations=RETOUCH_GROW_PX)
    mask[backdrop] = 0
    filled = cv2.inpaint(image, mask, RETOUCH_RADIUS_PX, cv2.INPAINT_TELEA).astype(np.float32)
    pixels = image.astype(np.float32)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), TEXTURE_SIGMA_PX)
    below = np.pad(detail, ((0, TEXTURE_FROM_BELOW_PX), (0, 0), (0, 0)), mode="edge")[TEXTURE_FROM_BELOW_PX:]
    weight = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.0)[..., None]
    return np.clip(filled + weight * below, 0, 255).astype(np.uint8)


@functools.cache
def hopper_template_photo() -> np.ndarray:
    """Grace Hopper's photo as the sample templates use it: her glasses' ends painted out."""
    return painted_out(rgb(grace_hopper()), HOPPER_GLASSES_ENDS)


def sample_templates() -> dict[str, tuple[bytes, str]]:
    """Template id -> (image bytes, where it comes from), registered at set-up."""
    templates = {
        "hopper-portrait": (
            _png(hopper_template_photo()),
            "matplotlib sample data grace_hopper.jpg (public domain), her glasses' ends at the temples painted out",
        ),
        "astronaut-poster": (astronaut(), "scikit-image data.astronaut() (NASA, public domain)"),
        "comic-astronaut": (
            _png(stylize_comic(rgb(astronaut()))),
            "scikit-image data.astronaut(), comic-styled by facefuse.samples.stylize_comic",
        ),
        "painted-hopper": (
            _png(stylize_painting(hopper_template_photo())),
            "matplotlib grace_hopper.jpg (glasses' ends painted out), painted by facefuse.samples.stylize_painting",
        ),
    }
    try:
        templates["group-six"] = (group(), "insightface wheel data/images/t1.jpg (test-time only, not committed)")
    except FileNotFoundError:
        pass
    return templates


def is_registered(store: TemplateStore, template_id: str, source: str) -> bool:
    """Whether `store` serves this sample as made now: a sample made
    differently since (its source line says how) is to be registered again, so an
    upgraded checkout serves the new one."""
    return template_id in store.ids() and store.info(template_id).get("source") == source
