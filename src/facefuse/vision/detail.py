"""The fused face's fine detail matched to the template face's, where it is seen: at
the poster's resolution, when the crop is pasted back (`compositing.paste_faces`).

A photo's face is often enlarged into the poster and the fuse's warp resamples it
again, so it comes out softer than the template face around it and looks pasted on.
The template face's statistics are measured once per template (`template_face_detail`,
kept by `TemplateArtifact.paste_details`); the user's side per poster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from facefuse.vision.alignment import CANONICAL_KEYPOINTS, face_roi, invert_affine
from facefuse.vision.face_region import inner_face_mask, inter_ocular, keypoint_ellipses

# Bands are box means' differences in poster pixels: x less its 3x3 mean, and that less its 7x7 mean.
DETAIL_BANDS = ((1, 3), (3, 7))
# The fused face's detail in each band is raised toward the template face's, by at most
# this gain (never lowered); amplitudes below the coring level (grey levels of 255:
# noise, JPEG ripple) are not amplified.
MAX_DETAIL_GAIN = 4.0
DETAIL_CORING = 3.0
# Grain that makes up what the template face still has more of in the finest band,
# fixed per seed so a poster is reproducible: cut from one tile of unit noise.
GRAIN_SEED = 9
GRAIN_TILE_PX = 512
# At most this standard deviation (grey levels) of noise: a painting's brush strokes
# also read as fine detail, and noise standing in for them looks dirty; what the
# template's finest band has beyond it is made up with the template's own texture, less
# its strong edges: amplitudes over TEXTURE_EDGE times its typical one, and their
# neighbours.
MAX_GRAIN_LEVELS = 5.0
TEXTURE_EDGE = 2.5
_GRAIN_TILE = np.random.default_rng(GRAIN_SEED).standard_normal((GRAIN_TILE_PX, GRAIN_TILE_PX), np.float32)
# Detail changes only inside the face (semi-axes in inter-ocular distances, about the
# keypoints' centre), feathered over this many inter-ocular distances.
FACE_SEMI_AXES_IOD = (1.05, 1.2)
FACE_FEATHER_IOD = 0.12
# On a painting the eyes keep the fused face's own detail. Raised toward brushwork's
# amplitude (the gain at its cap), a lid's edge came out as an etched line between two
# white bands (the bands' overshoot on either side of an edge): "white slit eyes",
# "glowing white rims". A painting is a template face whose finest band is far beyond
# any photo's grain (sigma over BRUSHWORK_SIGMA grey levels: the sample painting 13.5;
# Grace Hopper's wrinkled photo 6.9, the astronaut 4.1). On photos the eyes keep the
# gain: without it soft photos' eyes came out blurred in a sharp face (rated blind,
# docs/quality.md#eyes-own-detail). The eyes: an ellipse about each eye keypoint
# (semi-axes in inter-ocular distances: the eye, its lids, lashes and crease), feathered
# like the face.
BRUSHWORK_SIGMA = 10.0
EYE_SEMI_AXES_IOD = (0.45, 0.28)
# Fewer inner-face pixels than this (a face a few pixels wide): nothing to match.
MIN_INNER_PX = 64
# A median absolute deviation over this is one standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
# Line art (a comic's inked outlines): the template face's finest band is a few strong
# lines on flat colour, its RMS over this many times its typical amplitude (photos and
# paintings read 2-3, the sample comic 15). The fused face then gets its own lines inked.
LINE_ART_SPARSITY = 5.0
# The template's ink: pixels this many grey levels darker than their 7x7 surroundings.
INK_EDGE_LEVELS = 12.0
# The face's darkest lines are inked, as many pixels as this share of the template's
# inked share (all of it reads scratchy: skin pores become dots), ramped over this
# fraction of the line threshold.
INK_SHARE = 0.5
INK_RAMP = 0.25
# Only lines at least this many grey levels darker than their surroundings are inked
# (a face with fewer lines than the share gets no ink on its noise).
MIN_LINE_LEVELS = 6.0


@dataclass(frozen=True)
class TemplateFaceDetail:
    """What detail matching needs of one template face (measured once per template)."""

    inner: np.ndarray  # bool, over the face's ROI: the inner face
    face: np.ndarray  # float32 0..1 over the ROI: the face, feathered (detail is changed only there)
    typical: tuple[float, ...]  # typical amplitude in each of DETAIL_BANDS over it
    ink_share: float  # the inner face's share of inked pixels on line art, else 0
    ink_colour: np.ndarray  # (3,) float32
    texture: np.ndarray | None = None  # float32 over the ROI: the finest band at unit RMS, 0 at strong edges

    def window(self, rows: slice, cols: slice) -> TemplateFaceDetail:
        """The same statistics over a window of the ROI (where a crop is pasted)."""
        texture = None if self.texture is None else self.texture[rows, cols]
        return dataclasses.replace(self, inner=self.inner[rows, cols], face=self.face[rows, cols], texture=texture)


def template_face_detail(template_rgb: np.ndarray, affine: np.ndarray, crop_px: int) -> TemplateFaceDetail | None:
    """The template face's detail statistics over its inner face (None: face too small)."""
    roi = face_roi(template_rgb.shape, affine, crop_px)
    if roi is None:
        return None
    region = template_rgb[roi.y0 : roi.y1, roi.x0 : roi.x1]
    # The crop's canonical keypoints, in ROI pixels, give the inner face.
    from_crop = invert_affine(roi.to_crop.astype(np.float32))
    keypoints = (CANONICAL_KEYPOINTS * crop_px) @ from_crop[:, :2].T + from_crop[:, 2]
    inner = inner_face_mask(region.shape, keypoints)
    if int(inner.sum()) < MIN_INNER_PX:
        return None
    # The face, cheeks and chin included, but not the warp's outer ring (which moves the
    # template's own hair and background: their detail is the template's already).
    iod = inter_ocular(keypoints)
    face = inner_face_mask(region.shape, keypoints, FACE_SEMI_AXES_IOD).astype(np.float32)
    detail = measure_template_face(region, inner, cv2.GaussianBlur(face, (0, 0), FACE_FEATHER_IOD * iod))
    if MAD_TO_SIGMA * detail.typical[0] > BRUSHWORK_SIGMA:
        eyes = keypoint_ellipses(region.shape, keypoints, keypoints[:2], EYE_SEMI_AXES_IOD)
        without_eyes = face * ~eyes
        detail = dataclasses.replace(detail, face=cv2.GaussianBlur(without_eyes, (0, 0), FACE_FEATHER_IOD * iod))
    return detail


def measure_template_face(region: np.ndarray, inner: np.ndarray, face: np.ndarray | None = None) -> TemplateFaceDetail:
    """The statistics over `inner`; `face` (default: everywhere) is where detail may change."""
    if face is None:
        face = np.ones(inner.shape, np.float32)
    grey = _grey(region)
    bands = [_band(grey, *band) for band in DETAIL_BANDS]
    typical = tuple(_typical(band[inner]) for band in bands)
    finest = bands[0][inner]
    line_art = np.sqrt(np.mean(finest * finest)) > LINE_ART_SPARSITY * max(typical[0], 1e-3)
    ink = (bands[1] < -INK_EDGE_LEVELS) & inner
    share = float(ink.sum()) / float(inner.sum()) if line_art else 0.0
    colour = np.median(region[ink], axis=0).astype(np.float32) if share > 0 else np.zeros(3, np.float32)
    return TemplateFaceDetail(inner, face, typical, share, colour, _texture(bands[0], typical[0], inner))


def _texture(finest: np.ndarray, typical: float, inner: np.ndarray) -> np.ndarray | None:
    """The template's own fine texture (its finest band) at unit RMS over the inner face,
    0 on and next to its strong edges (eyes, outlines, glasses rims: features, not
    texture); None where it has none."""
    strong = cv2.dilate((np.abs(finest) > TEXTURE_EDGE * typical).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    texture = np.where(strong, 0.0, finest).astype(np.float32)
    kept = texture[inner & ~strong]
    rms = float(np.sqrt(np.mean(kept * kept))) if kept.size else 0.0
    return texture / rms if rms > 1e-3 else None


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _band(grey: np.ndarray, finer: int, coarser: int) -> np.ndarray:
    fine = grey if finer == 1 else cv2.blur(grey, (finer, finer))
    return fine - cv2.blur(grey, (coarser, coarser))


def _typical(values: np.ndarray) -> float:
    """A band's typical amplitude: the median absolute value (of every third pixel: an
    estimate is enough), so the template's texture decides, not its few strong edges
    (a comic's inked outlines, Grace Hopper's glasses)."""
    return float(np.median(np.abs(values[::3]))) if values.size else 0.0


def _grain(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Unit Gaussian noise of `shape`, cut from one fixed tile at an offset per seed."""
    offset = (seed * 7919) % GRAIN_TILE_PX
    rows = np.arange(offset, offset + shape[0]) % GRAIN_TILE_PX
    cols = np.arange(offset // 2, offset // 2 + shape[1]) % GRAIN_TILE_PX
    return _GRAIN_TILE[np.ix_(rows, cols)]


def match_template_detail(pasted: np.ndarray, alpha: np.ndarray, inner: np.ndarray, template: TemplateFaceDetail,
                          grain_seed: int = GRAIN_SEED) -> np.ndarray:
    """The pasted face's fine detail brought to the template face's, where it is seen.

    A photo's face is often enlarged into the poster and the fuse's warp resamples it
    again, so it comes out softer than the template face around it and looks pasted on.
    Per band, the face's detail is scaled by the ratio of the template face's typical
    amplitude to its own (1 to MAX_DETAIL_GAIN, cored); then grain makes up what the
    template's finest band still has more of (a photo's film grain or sensor noise; a
    flat comic has none to make up): noise up to MAX_GRAIN_LEVELS, beyond that (a
    painting's brush texture) the template's own texture, its strong edges left out. On
    line-art templates the face's own darkest lines are then inked. Grey detail only:
    nothing of the template's features is carried over. alpha (0..255 float) weighs
    every change, so outside the mask the template stays exact (paste_faces passes the
    mask times the feathered face: the warp's ring around the face is the template's
    own). inner: where amplitudes are measured.
    """
    if int(inner.sum()) < MIN_INNER_PX:
        return pasted
    face_grey = _grey(pasted)
    extra = np.zeros_like(face_grey)
    after_gain = []  # the face's typical amplitude per band once raised
    for (finer, coarser), template_typical in zip(DETAIL_BANDS, template.typical):
        face_band = _band(face_grey, finer, coarser)
        face_typical = _typical(face_band[inner])
        gain = min(max(template_typical / max(face_typical, 1e-3), 1.0), MAX_DETAIL_GAIN)
        after_gain.append(gain * face_typical)
        if gain > 1.0:
            squared = face_band * face_band
            extra += (gain - 1.0) * face_band * (squared / (squared + DETAIL_CORING**2))
    # The face's finest band after its gain, against the template's; white noise keeps
    # 8/9 of its variance in that band (x less its 3x3 mean).
    deficit = (MAD_TO_SIGMA * template.typical[0]) ** 2 - (MAD_TO_SIGMA * after_gain[0]) ** 2
    grain_sigma = float(np.sqrt(max(deficit, 0.0) * 9.0 / 8.0))
    noise_sigma = min(grain_sigma, MAX_GRAIN_LEVELS)
    if noise_sigma > 0:
        extra += noise_sigma * _grain(extra.shape, grain_seed)
    # Beyond a photo's grain (a painting's brush texture): the template's own texture.
    texture_sigma = float(np.sqrt(grain_sigma**2 - noise_sigma**2))
    if texture_sigma > 0 and template.texture is not None:
        extra += texture_sigma * template.texture
    weight = alpha * (1.0 / 255.0)
    if template.ink_share > 0:
        return ink_lines(pasted.astype(np.float32) + (extra * weight)[..., None], face_grey + extra, weight, inner, template)
    # Saturating uint8 + float addition in one OpenCV pass.
    return cv2.add(pasted, cv2.merge([extra * weight] * 3), dtype=cv2.CV_8U)


def ink_lines(face: np.ndarray, face_grey: np.ndarray, weight: np.ndarray, inner: np.ndarray,
              template: TemplateFaceDetail) -> np.ndarray:
    """On a line-art template, the face's own darkest lines drawn in the template's ink;
    face (float RGB) comes back rounded to uint8.

    A comic's face is flat colour inside inked outlines: a photo's face pasted into it
    looks cut out however sharp it is. The lines are the user's (eyes, nostrils, lips,
    the jaw's shading: a difference of box means of the lightly smoothed face), never
    the template's; as many pixels are inked as INK_SHARE of the template face's inked
    share, in the template's ink colour, weighed by alpha.
    """
    face_lines = _band(cv2.GaussianBlur(face_grey, (0, 0), 1.0), *DETAIL_BANDS[1])
    threshold = min(float(np.quantile(face_lines[inner], template.ink_share * INK_SHARE)), -MIN_LINE_LEVELS)
    ink = np.clip((threshold - face_lines) / (-threshold * INK_RAMP) + 0.5, 0, 1) * weight
    face = face + ink[..., None] * (template.ink_colour - face)
    return np.clip(face + 0.5, 0, 255).astype(np.uint8)
