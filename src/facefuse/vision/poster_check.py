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

- sharpness: the face's detail against the template's own face there (a soft poster is
  shipped, with a warning: it is not broken, only less than it could be).

Each check gives a margin in [0, 1] (1: far inside its limit, 0: at it), and a check under
its limit fails the poster. The poster's quality and warnings, the ones its caller gets,
come from those margins (describe_poster), so they describe the poster, not the photo. Meshes are in
crop pixels of their own crop (the fused face at the working size, the user's at
FACE_CROP_PX).

It runs on every poster, so it looks only where it measures: each mask is drawn and
grown in its polygon's own box, and colour is converted only inside the features' and
the face oval's boxes. The pixels measured are the ones masks over the whole crop would
give (tests/unit/test_poster_check.py holds the boxes to that).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

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
# Sharpness: the Laplacian energy inside the face oval over the template's there, in the
# working crop (where a sharp template photo reads far sharper than a selfie brought up
# to it: Grace Hopper's posters read 0.06-1.0, median 0.25). The margin is 0 at
# SOFT_RATIO_ZERO and 1 at SHARP_RATIO, so SOFT warns under 0.25: on the 48 posters rated
# by eye (docs/quality.md#poster-verdict) that flagged 14, one of them publishable; at
# 0.75 it flagged 31, eight publishable. It lowers quality; it never fails a poster.
SOFT_RATIO_ZERO, SHARP_RATIO = 0.1, 0.4
# Features and skin regions are grown or shrunk by this share of the inter-ocular distance;
# the eyes, for the shine check, by this share (as far as glasses' lenses reach).
FEATURE_MARGIN_IOD = 0.08
LENS_MARGIN_IOD = 0.25

# The index tuples as arrays, made once: numpy converts a tuple index on every use.
_INDEX = {name: np.asarray(points) for name, points in FEATURES.items()}
_LANDMARKS, _NOSE, _OVAL = np.asarray(LANDMARK_POINTS), np.asarray(NOSE), np.asarray(FACE_OVAL)
_RIGHT_EYE, _LEFT_EYE = _INDEX["right_eye"], _INDEX["left_eye"]
_GROWN_BY_FEATURE_MARGIN = tuple(np.asarray(points) for points in (OUTER_LIPS, RIGHT_BROW, LEFT_BROW))
_GROWN_BY_LENS_MARGIN = (_RIGHT_EYE, _LEFT_EYE)
# The skin's box reaches this far beyond the face oval: the texture's 5x5 blur reads 2 px
# around a pixel, and the erosion needs the oval's outside (0) next to its edge.
_SKIN_BOX_MARGIN = 2
_ERODE_KERNEL = np.ones((3, 3), np.uint8)

# The shine's luma tests on the uint8 values: luma > SHINE_LUMA is Y >= _SHINE_Y, and
# luma over the template's by more than SHINE_OVER_TEMPLATE is the difference of the Ys
# >= _SHINE_OVER_TEMPLATE_Y (255 times either limit is far from a whole number, so
# rounding cannot move them).
_SHINE_Y = int(SHINE_LUMA * 255) + 1
_SHINE_OVER_TEMPLATE_Y = int(SHINE_OVER_TEMPLATE * 255) + 1

# (x0, y0, x1, y1): a box of pixels, x1 and y1 excluded; may be empty.
_Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PosterVerdict:
    failures: tuple[str, ...]  # e.g. "feature_lost:left_eye"; empty: the poster may ship
    margins: dict[str, float] = field(default_factory=dict)  # by check, 0..1 (see the module)
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
    eyes = np.stack([mesh[_RIGHT_EYE, :2].mean(0), mesh[_LEFT_EYE, :2].mean(0)])
    return max(inter_ocular(eyes), 1.0)


def _hull(points: np.ndarray) -> np.ndarray:
    """The polygon the masks fill: the points' convex hull in whole pixels."""
    return np.round(cv2.convexHull(points[:, :2].astype(np.float32))).astype(np.int32)


def _box(hull: np.ndarray, shape, margin: int) -> _Box:
    """The hull's bounding box grown by `margin` px, cut to the image."""
    x, y, width, height = cv2.boundingRect(hull)
    return (max(x - margin, 0), max(y - margin, 0),
            min(x + width + margin, shape[1]), min(y + height + margin, shape[0]))


def _grow_radius(grow_px: float) -> int:
    """How far (px) a mask grown by grow_px reaches beyond its polygon."""
    return round(grow_px) if grow_px >= 1 else 0


def _hull_mask(hull: np.ndarray, box: _Box, grow_px: float = 0.0) -> np.ndarray:
    """The hull filled (uint8 1) and grown by a disc of grow_px, over `box` only. The same
    pixels as on the whole image when the box reaches _grow_radius(grow_px) beyond the
    hull or to the image's edge: nothing outside it is set or grows into it (dilation
    ignores the border, the box's as the image's)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.uint8)
    if mask.size == 0:
        return mask
    cv2.fillPoly(mask, [hull], 1, offset=(-x0, -y0))
    return _grow(mask, _grow_radius(grow_px)) if grow_px >= 1 else mask


@functools.lru_cache(maxsize=None)
def _disc(radius: int) -> np.ndarray:
    """The (2r+1)-px ellipse masks are grown by (cv2's, as the check has always used)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


@functools.lru_cache(maxsize=None)
def _disc_half_widths(radius: int) -> np.ndarray:
    """The half-width of each of _disc's rows (-r..r): each is one run centred on its middle."""
    return (_disc(radius).sum(1) // 2).astype(np.int32)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """cv2.dilate(mask, _disc(radius)), worked out from the ends of the mask's runs: dilate's
    cost grows with the disc's area, and at the lenses' margin it was most of the check's.
    A filled convex polygon has one run per row, over consecutive rows, each touching the
    next; grown, each of its rows is one run again, from the leftmost to the rightmost end
    among the rows within the disc's reach, each widened by the disc's half-width at that
    row's distance. Any other mask goes to dilate."""
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return mask
    filled = mask[rows[0]:rows[-1] + 1].view(bool)
    left, right = filled.argmax(1), width - 1 - filled[:, ::-1].argmax(1)
    if (len(rows) != len(filled) or (filled.sum(1) != right - left + 1).any()
            or (np.maximum(left[1:], left[:-1]) > np.minimum(right[1:], right[:-1]) + 1).any()):
        return cv2.dilate(mask, _disc(radius))
    # Every row's run ends, rows beyond the mask ending out of any run's reach, padded by
    # the radius so that row y's window (2r+1 long, from y) holds the rows y-r..y+r
    # (int32: numpy's int64 is slower here and pixel columns need no more).
    ends = np.empty((2, height + 2 * radius), np.int32)
    ends[0], ends[1] = width + radius, -1 - radius
    ends[:, radius + rows[0]:radius + rows[-1] + 1] = left, right
    step = ends.strides[1]
    windows = as_strided(ends, (2, height, 2 * radius + 1), (ends.strides[0], step, step), writeable=False)
    half = _disc_half_widths(radius)
    lo, hi = (windows[0] - half).min(1), (windows[1] + half).max(1)
    columns = np.arange(width, dtype=np.int32)
    return ((columns >= lo[:, None]) & (columns <= hi[:, None])).view(np.uint8)


def _ycc(rgb: np.ndarray) -> np.ndarray:
    """YCrCb (uint8) of a part of a crop: a per-pixel conversion, so a box of the crop
    gives the whole crop's values there."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)


def _luma_plane(ycc: np.ndarray) -> np.ndarray:
    """The Y plane, contiguous: cv2 copies a strided one on every call."""
    return np.ascontiguousarray(ycc[..., 0])


def _unit(values: np.ndarray) -> np.ndarray:
    """0..255 values as 0..1 (float32)."""
    return values.astype(np.float32) / 255.0


def _feature_spread(rgb: np.ndarray, points: np.ndarray) -> tuple[int, float]:
    """How many pixels the feature's polygon covers and their luma's spread (0..1)."""
    hull = _hull(points)
    x0, y0, x1, y1 = box = _box(hull, rgb.shape, 0)
    mask = _hull_mask(hull, box)
    count = cv2.countNonZero(mask) if mask.size else 0
    if count == 0:
        return 0, 0.0
    _, spread = cv2.meanStdDev(_luma_plane(_ycc(rgb[y0:y1, x0:x1])), mask=mask)
    return count, float(spread[0, 0]) / 255.0


def _skin_mask(expected: np.ndarray, iod: float, shape) -> tuple[np.ndarray, np.ndarray, _Box]:
    """The skin the shine and two-tone checks read and the whole face oval (both uint8 1,
    over the returned box around the oval): the skin is the oval less the features grown
    by their margins, eroded away from them. Each feature is grown in its own box and cut
    out where that meets the oval's."""
    oval_hull = _hull(expected[_OVAL])
    box = _box(oval_hull, shape, _SKIN_BOX_MARGIN)
    oval = _hull_mask(oval_hull, box)
    skin = oval.copy()
    grow = FEATURE_MARGIN_IOD * iod
    # Around the eyes as far as glasses' lenses reach: their reflections are the user's
    # (or the template's) glasses, near white and smooth like shine.
    grown = [(index, grow) for index in _GROWN_BY_FEATURE_MARGIN]
    grown += [(index, LENS_MARGIN_IOD * iod) for index in _GROWN_BY_LENS_MARGIN]
    for index, grow_px in grown:
        hull = _hull(expected[index])
        feature_box = _box(hull, shape, _grow_radius(grow_px))
        feature = _hull_mask(hull, feature_box, grow_px)
        x0, y0 = max(box[0], feature_box[0]), max(box[1], feature_box[1])
        x1, y1 = min(box[2], feature_box[2]), min(box[3], feature_box[3])
        if x1 > x0 and y1 > y0:
            cut = feature[y0 - feature_box[1]:y1 - feature_box[1], x0 - feature_box[0]:x1 - feature_box[0]]
            skin[y0 - box[1]:y1 - box[1], x0 - box[0]:x1 - box[0]][cut.view(bool)] = 0
    if skin.size:
        skin = cv2.erode(skin, _ERODE_KERNEL, iterations=max(1, int(grow)))
    return skin, oval, box


def _texture_at(y: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The luma's (0..1) spread over 5x5 pixels at the given pixels of the uint8 luma y,
    computed only over their box and the 2 px around it the 5x5 reads: the box filter's
    sums are exact (in float64), so any box gives the values the whole image would."""
    top, left = max(int(rows.min()) - 2, 0), max(int(columns.min()) - 2, 0)
    luma = _unit(y[top:int(rows.max()) + 3, left:int(columns.max()) + 3])
    spread = np.sqrt(np.maximum(cv2.blur(luma * luma, (5, 5)) - cv2.blur(luma, (5, 5)) ** 2, 0))
    return spread[rows - top, columns - left]


def _shine_share(fused_ycc: np.ndarray, fused_y: np.ndarray, template_y: np.ndarray, skin: np.ndarray) -> float:
    """The share of the skin that is shine (see SHINE_LUMA); all inputs uint8 over the skin's
    box (whose margin is the 5x5 texture's). The luma tests first, on the uint8 values;
    chroma and texture only where they hold."""
    bright = skin.view(bool) & (fused_y >= _SHINE_Y) & (cv2.subtract(fused_y, template_y) >= _SHINE_OVER_TEMPLATE_Y)
    # (np.nonzero is many times slower on a 2D mask than this)
    rows, columns = np.divmod(np.flatnonzero(bright), bright.shape[1])
    if not len(rows):
        return 0.0
    chroma = np.hypot(_unit(fused_ycc[rows, columns, 1]) - 0.5, _unit(fused_ycc[rows, columns, 2]) - 0.5)
    texture = _texture_at(fused_y, rows, columns)
    shine = np.count_nonzero((chroma < SHINE_MAX_CHROMA) & (texture < SHINE_MAX_TEXTURE))
    return shine / max(cv2.countNonZero(skin), 1)


def _two_tone(fused_y: np.ndarray, template_y: np.ndarray, skin: np.ndarray, split: int) -> float | None:
    """How much more the skin's two halves (columns before and from `split`) differ in mean
    luma (0..1) than the template's do; None if a half has under 16 pixels. All uint8 over
    the skin's box."""
    if not 0 < split < skin.shape[1]:
        return None
    halves = [np.s_[:, :split], np.s_[:, split:]]
    if min(cv2.countNonZero(skin[half]) for half in halves) < 16:
        return None
    step, template_step = (abs(cv2.mean(y[halves[0]], skin[halves[0]])[0] - cv2.mean(y[halves[1]], skin[halves[1]])[0])
                           / 255.0 for y in (fused_y, template_y))
    return step - template_step


def _sharpness(fused_y: np.ndarray, template_y: np.ndarray, oval: np.ndarray) -> float | None:
    """The fused luma's Laplacian energy inside the oval over the template's (uint8, over the
    skin's box); None where the template's face has no detail to compare with."""
    inside = oval.view(bool)
    fused_energy, template_energy = (float(np.mean(np.square(cv2.Laplacian(y, cv2.CV_32F)[inside])))
                                     for y in (fused_y, template_y))
    return fused_energy / template_energy if template_energy > 1e-3 else None


def _luma_measures(fused: np.ndarray, template_face: np.ndarray, skin: np.ndarray, oval: np.ndarray, box: _Box,
                   nose_x: float) -> tuple[float, float | None, float | None]:
    """The skin's shine share, its two-tone excess (halves either side of the nose line: the
    columns left of nose_x, and the rest) and the oval's sharpness against the template,
    from the crops' colour inside the skin's box only, converted once for all three."""
    if skin.size == 0:  # the oval lies wholly outside the crop: no skin to shine
        return 0.0, None, None
    x0, y0, x1, y1 = box
    fused_ycc = _ycc(fused[y0:y1, x0:x1])
    fused_y, template_y = _luma_plane(fused_ycc), _luma_plane(_ycc(template_face[y0:y1, x0:x1]))
    split = int(np.clip(np.ceil(nose_x) - x0, 0, x1 - x0))
    return (_shine_share(fused_ycc, fused_y, template_y, skin), _two_tone(fused_y, template_y, skin, split),
            _sharpness(fused_y, template_y, oval))


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

    shift = float(np.median(np.linalg.norm(found_mesh[_LANDMARKS, :2] - expected[_LANDMARKS, :2], axis=1))) / iod
    measures["feature_shift_iod"] = shift
    margins["geometry"] = _margin(-shift, -MAX_FEATURE_SHIFT_IOD, -MAX_FEATURE_SHIFT_IOD / 3)
    if shift > MAX_FEATURE_SHIFT_IOD:
        failures.append("features_misplaced")

    for name, index in _INDEX.items():
        (here, here_spread), (there, there_spread) = (_feature_spread(fused, expected[index]),
                                                      _feature_spread(user_face, user_mesh[index]))
        if here < 4 or there < 4:
            continue
        ratio = here_spread / max(there_spread, 1e-3)
        measures[f"contrast_{name}"] = ratio
        margins[f"contrast_{name}"] = _margin(ratio, MIN_FEATURE_CONTRAST, 0.8)
        if ratio < MIN_FEATURE_CONTRAST:
            failures.append(f"feature_lost:{name}")

    skin, oval, box = _skin_mask(expected, iod, fused.shape)
    share, excess, sharpness = _luma_measures(fused, template_face, skin, oval, box,
                                              float(np.median(expected[_NOSE, 0])))
    measures["shine_share"] = share
    margins["shine"] = _margin(-share, -MAX_SHINE_SHARE, 0.0)
    if share > MAX_SHINE_SHARE:
        failures.append("blown_highlight")

    # Two-tone: the skin's two halves (either side of the nose line) differ in mean luma
    # by more than the template's halves do.
    if excess is not None:
        measures["two_tone"] = excess
        margins["two_tone"] = _margin(-excess, -MAX_TWO_TONE, 0.0)
        if excess > MAX_TWO_TONE:
            failures.append("two_tone")

    if sharpness is not None:
        measures["sharpness"] = sharpness
        margins["sharpness"] = _margin(sharpness, SOFT_RATIO_ZERO, SHARP_RATIO)

    return PosterVerdict(tuple(failures), margins, measures)


# What each check's thin margin tells the caller, in the order warnings are listed; a
# margin under WARN_UNDER_MARGIN warns.
POSTER_WARNINGS = {
    "presence": "FACE_FAINT", "geometry": "FEATURES_SHIFTED", "contrast": "FEATURES_FADED",
    "shine": "SHINE", "two_tone": "UNEVEN_TONE", "sharpness": "SOFT",
}
WARN_UNDER_MARGIN = 0.5


def describe_poster(verdicts: list[PosterVerdict]) -> tuple[float, tuple[str, ...]]:
    """The poster's quality (0..1) and warnings, from its faces' margins: each check's
    weakest margin over the faces halves the score at 0 (the product of 0.5 + 0.5 margin,
    as the photo's score is made), and warns under WARN_UNDER_MARGIN."""
    weakest: dict[str, float] = {}
    for verdict in verdicts:
        for name, margin in verdict.margins.items():
            check = "contrast" if name.startswith("contrast_") else name
            weakest[check] = min(weakest.get(check, 1.0), margin)
    quality = float(np.prod([0.5 + 0.5 * margin for margin in weakest.values()]))
    warnings = tuple(warning for check, warning in POSTER_WARNINGS.items()
                     if weakest.get(check, 1.0) < WARN_UNDER_MARGIN)
    return round(quality, 3), warnings
