"""The fused face looked at again before the poster ships (postprocess's verification).

The user-side gates (face_quality) judge the photo; this judges what the fuse made of
it, in the template's crop, with the face mesh found again on the fused face:

- face: the mesh network still sees a face there (its presence score);
- geometry: the eyes, brows, nose and mouth it finds lie where the fuse put them (the
  template's mesh moved toward the user's posed shape by profile_degree);
- features: each eye and the mouth has at least a share of the contrast it has in the
  user's photo (a feature filled with skin, or smeared, has lost it);
- highlights: no near-white, colourless blob inside the skin that the template does not
  have there (shine turned into a white patch);
- even skin: the face's two halves are not two tones (a turned face half completed
  from elsewhere), beyond what the template's own light gives.

Each check gives a margin in [0, 1] (1: far inside its limit, 0: at it); the poster's
quality is the smallest, and a check under its limit fails the poster. Meshes are in
crop pixels of their own crop (the fused face at the working size, the user's at
FACE_CROP_PX).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facefuse.vision.face_quality import FACE_OVAL, LEFT_BROW, LEFT_EYE, OUTER_LIPS, RIGHT_BROW, RIGHT_EYE
from facefuse.vision.face_region import inter_ocular

NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327)
FEATURES = {"right_eye": RIGHT_EYE, "left_eye": LEFT_EYE, "mouth": OUTER_LIPS}
LANDMARK_POINTS = tuple(sorted({*RIGHT_EYE, *LEFT_EYE, *RIGHT_BROW, *LEFT_BROW, *OUTER_LIPS, *NOSE}))
# The mesh network's presence score under this: no face there any more.
MIN_PRESENCE = 0.5
# Median distance of the found feature points from where the fuse put them, in
# inter-ocular distances, over this: a feature moved, doubled or smeared.
MAX_FEATURE_SHIFT_IOD = 0.12
# A feature's luma spread in the poster under this share of its spread in the photo: lost.
MIN_FEATURE_CONTRAST = 0.4
# Shine: luma over this (0..1), chroma under SHINE_MAX_CHROMA and smooth (the luma's
# spread over 5x5 pixels under SHINE_MAX_TEXTURE: a white beard is textured), where the
# template's face is at least SHINE_OVER_TEMPLATE darker; a blob of more than this
# share of the skin's area fails.
SHINE_LUMA, SHINE_MAX_CHROMA, SHINE_MAX_TEXTURE, SHINE_OVER_TEMPLATE = 0.9, 0.06, 0.03, 0.12
MAX_SHINE_SHARE = 0.006
# Two-tone: the skin's halves differ in mean luma (0..1) by this much more than the
# template's halves.
MAX_TWO_TONE = 0.08
# Features and skin regions are grown or shrunk by this share of the inter-ocular distance;
# the eyes, for the shine check, by this share (as far as glasses' lenses reach).
FEATURE_MARGIN_IOD = 0.08
LENS_MARGIN_IOD = 0.25


@dataclass(frozen=True)
class PosterVerdict:
    quality: float  # the smallest margin, 0..1
    failures: tuple[str, ...]  # e.g. "feature_lost:left_eye"; empty: the poster may ship
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def expected_mesh(template_mesh: np.ndarray, user_mesh: np.ndarray, profile_degree: float) -> np.ndarray:
    """Where the fuse puts the face: the template mesh moved toward the user's mesh, posed
    onto it by a least-squares similarity in 3D, by profile_degree (as fuse does)."""
    src, dst = np.asarray(user_mesh, np.float64), np.asarray(template_mesh, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    u, _, vt = np.linalg.svd(d.T @ s)
    rotation = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    rotated = s @ rotation.T
    scale = (rotated * d).sum() / max((s * s).sum(), 1e-9)
    posed = rotated * scale + dst_mean
    share = float(np.clip(profile_degree / 100.0, 0, 1))
    return (dst + share * (posed - dst)).astype(np.float32)


def _iod(mesh: np.ndarray) -> float:
    eyes = np.stack([mesh[list(RIGHT_EYE), :2].mean(0), mesh[list(LEFT_EYE), :2].mean(0)])
    return max(inter_ocular(eyes), 1.0)


def _polygon_mask(shape, points: np.ndarray, grow_px: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(cv2.convexHull(points[:, :2].astype(np.float32))).astype(np.int32)], 1)
    if grow_px >= 1:
        size = int(2 * round(grow_px) + 1)
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask.astype(bool)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255.0


def _margin(value: float, limit: float, good: float) -> float:
    """0 at the limit, 1 at `good` (either side of the limit), clipped."""
    return float(np.clip((value - limit) / (good - limit), 0.0, 1.0))


def check_fused_face(
    fused: np.ndarray, template_face: np.ndarray, template_mesh: np.ndarray,
    user_face: np.ndarray, user_mesh: np.ndarray, found_mesh: np.ndarray, presence: float,
    profile_degree: float,
) -> PosterVerdict:
    """fused, template_face: (S, S, 3) uint8 in the template's crop, with template_mesh and
    found_mesh (the mesh found on `fused`) in its pixels; user_face, user_mesh: the
    user's aligned crop and mesh."""
    measures: dict[str, float] = {"presence": float(presence)}
    margins: dict[str, float] = {"presence": _margin(presence, MIN_PRESENCE, 0.9)}
    failures: list[str] = []
    if presence < MIN_PRESENCE:
        failures.append("face_lost")
    # The template side comes at the working size; the user's mesh at its own crop size.
    expected = expected_mesh(template_mesh, user_mesh * (len(fused) / len(user_face)), profile_degree)
    iod = _iod(expected)

    shift = float(np.median(np.linalg.norm(found_mesh[list(LANDMARK_POINTS), :2] - expected[list(LANDMARK_POINTS), :2], axis=1))) / iod
    measures["feature_shift_iod"] = shift
    margins["geometry"] = _margin(-shift, -MAX_FEATURE_SHIFT_IOD, -MAX_FEATURE_SHIFT_IOD / 3)
    if shift > MAX_FEATURE_SHIFT_IOD:
        failures.append("features_misplaced")

    fused_ycc, user_ycc, template_ycc = _luma(fused), _luma(user_face), _luma(template_face)
    for name, points in FEATURES.items():
        here = fused_ycc[..., 0][_polygon_mask(fused.shape, expected[list(points)])]
        there = user_ycc[..., 0][_polygon_mask(user_face.shape, user_mesh[list(points)])]
        if here.size < 4 or there.size < 4:
            continue
        ratio = float(here.std() / max(there.std(), 1e-3))
        measures[f"contrast_{name}"] = ratio
        margins[f"contrast_{name}"] = _margin(ratio, MIN_FEATURE_CONTRAST, 0.8)
        if ratio < MIN_FEATURE_CONTRAST:
            failures.append(f"feature_lost:{name}")

    grow = FEATURE_MARGIN_IOD * iod
    features = np.zeros(fused.shape[:2], bool)
    for points in (OUTER_LIPS, RIGHT_BROW, LEFT_BROW):
        features |= _polygon_mask(fused.shape, expected[list(points)], grow)
    # Around the eyes as far as glasses' lenses reach: their reflections are the user's
    # (or the template's) glasses, near white and smooth like shine.
    for points in (RIGHT_EYE, LEFT_EYE):
        features |= _polygon_mask(fused.shape, expected[list(points)], LENS_MARGIN_IOD * iod)
    skin = _polygon_mask(fused.shape, expected[list(FACE_OVAL)]) & ~features
    skin = cv2.erode(skin.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(grow))).astype(bool)
    chroma = np.hypot(fused_ycc[..., 1] - 0.5, fused_ycc[..., 2] - 0.5)
    luma = fused_ycc[..., 0]
    texture = np.sqrt(np.maximum(cv2.blur(luma * luma, (5, 5)) - cv2.blur(luma, (5, 5)) ** 2, 0))
    shine = skin & (luma > SHINE_LUMA) & (chroma < SHINE_MAX_CHROMA) & (texture < SHINE_MAX_TEXTURE) \
        & (luma - template_ycc[..., 0] > SHINE_OVER_TEMPLATE)
    share = float(shine.sum() / max(skin.sum(), 1))
    measures["shine_share"] = share
    margins["shine"] = _margin(-share, -MAX_SHINE_SHARE, 0.0)
    if share > MAX_SHINE_SHARE:
        failures.append("blown_highlight")

    # Two-tone: the skin's two halves (either side of the nose line) differ in mean luma
    # by more than the template's halves do.
    nose_x = float(np.median(expected[list(NOSE), 0]))
    columns = np.arange(fused.shape[1])[None, :]
    halves = [skin & (columns < nose_x), skin & (columns >= nose_x)]
    if min(h.sum() for h in halves) >= 16:
        step = abs(float(fused_ycc[..., 0][halves[0]].mean() - fused_ycc[..., 0][halves[1]].mean()))
        template_step = abs(float(template_ycc[..., 0][halves[0]].mean() - template_ycc[..., 0][halves[1]].mean()))
        excess = step - template_step
        measures["two_tone"] = excess
        margins["two_tone"] = _margin(-excess, -MAX_TWO_TONE, 0.0)
        if excess > MAX_TWO_TONE:
            failures.append("two_tone")

    return PosterVerdict(min(margins.values()), tuple(failures), measures)
