"""Is the user's face good enough to fuse? Measured on the aligned crop and its mesh.

Four things make a poster that cannot be published, and each is refused with its own
reason before `fuse` runs:
- a head turned or nodded too far (yaw/pitch from the mesh's depth): the hidden side
  must be invented and the shape comes out wrong (FACE_POSE_UNSUPPORTED);
- something over the eyes, or over one of them (sunglasses, a hand, a lock of hair): the
  poster's eyes would be the occluder's (FACE_OCCLUDED); the nose ridge and the chin are
  measured too, for a warning (a cup held over the mouth is not refused: the mouth
  itself cannot be told from it, and a white beard reads like it below the lips);
- hair strands across the eyes and cheeks: thin, dark and skin between them, so the
  colour test above misses them, and `fuse` (which tests colour on a coarse grid and
  never inside the eyes) would paste them (FACE_OCCLUDED);
- too dark or too blurred to give a sharp face (FACE_QUALITY_LOW).
Milder forms of the same become warnings, and all of them a quality score in 0..1, so a
calling service can ask for a better selfie. Thresholds and the figures behind them are
in the README ("Quality gates").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facefuse.errors import FaceError, Reason

# MediaPipe face-mesh indices.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # image left
LEFT_EYE = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
NOSE_RIDGE = (168, 6, 197, 195, 5, 4)
# The face oval, clockwise from the top of the forehead (index 10): the fuse program's
# warp and mask and the poster check's skin region.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
CHEEKS_AND_FOREHEAD = (50, 280, 205, 425, 151, 108, 337)
CHEEK_LEFT, CHEEK_RIGHT, FOREHEAD_TOP, CHIN = 234, 454, 10, 152
# The forehead-to-chin line of a face looking into the camera leans this much in the
# mesh's depth (median of the development set's frontal faces: +6.4).
FRONTAL_PITCH_DEG = 6.0
# Work on the crop at 1/3 size: colours and fractions need no more.
MEASURE_SCALE = 3
# Skin test: within this many robust spreads of the face's own skin colour (YCbCr),
# measured over the whole face (an ellipse through cheeks, forehead top and chin, this
# share of their spans, less eyes, brows and lips): an occluder over one side is a
# minority there, as it may not be at a few sample points. And not darker than this
# share of the skin's luma: brown hair has skin's chroma, and hair, sunglasses and dark
# objects are under half its luma where the shadows of a face lit from one side
# rarely are.
SKIN_SPREADS = 3.0
MIN_CHROMA_SPREAD, MIN_LUMA_SPREAD = 4.0, 12.0
SKIN_REFERENCE_SPAN = 0.85
SKIN_DARK_SHARE = 0.5
# Strands: a pixel darker than its closing (a disc this many inter-ocular distances
# wide) by this share of the skin's luma lies on a thin dark line. Counted over the
# mid-face band (brows to the base of the nose, this share of the cheek-to-cheek
# half-width about its centre) less the eyes with their lashes, eyeliner and glasses
# frames and the nostrils, which are thin and dark too; a moustache lies below the
# band. Measured at the crop's full size: strands are 1-3 px; only pieces of line at least
# STRAND_MIN_LENGTH kernels long count.
STRAND_KERNEL_IOD = 0.06
STRAND_MIN_LENGTH = 2
STRAND_CONTRAST = 0.25
STRAND_BAND_HALF_WIDTH = 0.8
STRAND_EYE_RADIUS_IOD, STRAND_NOSE_TIP_RADIUS_IOD = 0.45, 0.3
NOSE_TIP, NOSE_BASE = 4, 2
# The chin region: a disc halfway from the lips' centre to the chin point.
CHIN_RADIUS_IOD = 0.25

WARNINGS = ("STRONG_HEAD_TURN", "FACE_PARTLY_OCCLUDED", "LOW_LIGHT", "BLURRED", "LOW_RESOLUTION")


@dataclass(frozen=True)
class QualityLimits:
    """Refusal limits (the first three groups) and warning levels. Defaults chosen on the
    development set; see the README for the figures."""

    # The angle between the face's forward direction and the camera's axis: yaw and pitch
    # together. Past 26 degrees every poster into a photo template was broken on the
    # development set (docs/models/gates.md#turn), where yaw 35 and pitch 30 apart let a face
    # turned 20 and nodded 20 through.
    max_turn_deg: float = 26.0
    # Fraction of the skin around the two eyes that is not the face's skin (mean of
    # both eyes): sunglasses, a hand or hair over the eyes.
    max_eyes_covered: float = 0.6
    # The same around either eye alone: a lock of hair or a hand over one eye.
    max_one_eye_covered: float = 0.8
    # Share of the mid-face crossed by thin dark lines: hair strands over the face.
    max_strands: float = 0.07
    # The same below the lips, not counting what is darker than the skin (a beard): a cup,
    # a phone or a mask over the mouth and chin. The fuse drew them over the template's
    # mouth (a teacup for a mouth). On the development set the two cup photos read 0.67
    # and 0.93 and nothing else over 0.35; a white full beard would read like a cup.
    max_mouth_covered: float = 0.55
    min_brightness: float = 30.0  # mean luma of the face's skin, 0..255
    min_sharpness: float = 0.03  # detail energy over contrast at the crop's scale
    warn_turn_deg: float = 20.0
    # Eyes' surroundings, nose ridge or chin this much not skin: FACE_PARTLY_OCCLUDED.
    warn_covered: float = 0.45
    warn_strands: float = 0.04
    warn_one_eye_covered: float = 0.55
    warn_brightness: float = 60.0
    warn_sharpness: float = 0.06
    warn_eye_distance_px: float = 30.0  # in the photo: faces of about 75 px and less

    @classmethod
    def from_parameters(cls, p: dict[str, str]) -> "QualityLimits":
        """The refusal limits from a stage's config parameters (face_quality, mesh_faces)."""
        return cls(
            max_turn_deg=float(p["max_turn_deg"]),
            max_eyes_covered=float(p["max_eyes_covered"]),
            max_one_eye_covered=float(p["max_one_eye_covered"]),
            max_strands=float(p["max_face_strands"]),
            max_mouth_covered=float(p["max_mouth_covered"]),
            min_brightness=float(p["min_face_brightness"]),
            min_sharpness=float(p["min_face_sharpness"]),
        )


@dataclass(frozen=True)
class FaceMeasures:
    yaw_deg: float
    pitch_deg: float
    covered: dict[str, float]  # region -> fraction that is not skin: eyes (mean of both), nose, chin
    worst_eye_covered: float  # the fraction around the more covered eye
    strands: float  # fraction of the mid-face on thin dark lines
    brightness: float
    sharpness: float
    eye_distance_px: float  # in the user's photo


@dataclass(frozen=True)
class Assessment:
    quality: float
    warnings: tuple[str, ...]


def head_pose_degrees(mesh: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch from the mesh's depth: the cheek-to-cheek line's angle out of the
    image plane, and the forehead-to-chin line's (less the frontal lean). Roll is taken
    out by the 5-point alignment of the crop the mesh comes from."""
    m = np.asarray(mesh, np.float64)
    left, right, top, chin = m[CHEEK_LEFT], m[CHEEK_RIGHT], m[FOREHEAD_TOP], m[CHIN]
    yaw = np.degrees(np.arctan2(right[2] - left[2], right[0] - left[0]))
    pitch = np.degrees(np.arctan2(chin[2] - top[2], chin[1] - top[1])) - FRONTAL_PITCH_DEG
    return float(yaw), float(pitch)


def turn_degrees(yaw_deg: float, pitch_deg: float) -> float:
    """The angle between the face's forward direction and the camera's axis, for a face
    turned by yaw and then nodded by pitch."""
    cosine = np.cos(np.radians(yaw_deg)) * np.cos(np.radians(pitch_deg))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _ycc(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)  # Y, Cr, Cb


def _mask(shape, polygons=(), discs=()) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    for centre, radius in discs:
        cv2.circle(mask, (int(round(centre[0])), int(round(centre[1]))), max(1, int(round(radius))), 1, -1)
    return mask.astype(bool)


def measure(crop: np.ndarray, mesh: np.ndarray, affine: np.ndarray) -> FaceMeasures:
    """crop: the aligned face (F, F, 3) uint8; mesh (468, 3) in crop pixels; affine:
    photo -> crop (its scale gives the face's size in the photo)."""
    yaw, pitch = head_pose_degrees(mesh)
    small = cv2.resize(crop, (crop.shape[1] // MEASURE_SCALE, crop.shape[0] // MEASURE_SCALE), interpolation=cv2.INTER_AREA)
    ycc = _ycc(small)
    xy = np.asarray(mesh, np.float64)[:, :2] / MEASURE_SCALE
    shape = small.shape[:2]
    right_eye, left_eye = xy[list(RIGHT_EYE)], xy[list(LEFT_EYE)]
    eye_distance = float(np.linalg.norm(right_eye.mean(0) - left_eye.mean(0)))

    features = _mask(shape, polygons=[right_eye, left_eye, xy[list(RIGHT_BROW)], xy[list(LEFT_BROW)]])
    reference = _face_ellipse(shape, xy) & ~features & ~_mask(shape, polygons=[xy[list(OUTER_LIPS)]])
    skin = ycc[reference] if reference.any() else ycc.reshape(-1, 3)
    centre = np.median(skin, axis=0)
    spread = 1.4826 * np.median(np.abs(skin - centre), axis=0)
    spread = np.maximum(spread, [MIN_LUMA_SPREAD, MIN_CHROMA_SPREAD, MIN_CHROMA_SPREAD])
    distance = np.abs(ycc - centre) / spread
    # Shadows are darker skin, not an occluder: luma only counts when it is far below.
    luma_far = ((centre[0] - ycc[..., 0]) / spread[0] > 2 * SKIN_SPREADS) | (ycc[..., 0] < SKIN_DARK_SHARE * centre[0])
    not_skin = (np.max(distance[..., 1:], axis=-1) > SKIN_SPREADS) | luma_far

    eyes = []
    for eye in (right_eye, left_eye):
        around = _mask(shape, discs=[(eye.mean(0), 0.32 * eye_distance)]) & ~features
        eyes.append(float(not_skin[around].mean()) if around.any() else 1.0)
    ridge = _mask(shape, discs=[(xy[i], 0.07 * eye_distance) for i in NOSE_RIDGE])
    # Below the lips: not skin, unless clearly darker than it (a cup, a phone, a mask count;
    # a beard, the user's own, does not). A warning only: a white beard reads like a cup.
    lips_centre = xy[list(OUTER_LIPS)].mean(0)
    chin = _mask(shape, discs=[((lips_centre + xy[CHIN]) / 2, CHIN_RADIUS_IOD * eye_distance)])
    not_darker = (centre[0] - ycc[..., 0]) / spread[0] <= SKIN_SPREADS
    covered = {"eyes": float(np.mean(eyes)), "nose": float(not_skin[ridge].mean()),
               "chin": float((not_skin & not_darker)[chin].mean()) if chin.any() else 0.0}

    strands = _strand_share(crop, np.asarray(mesh, np.float64)[:, :2], eye_distance * MEASURE_SCALE)

    # Cheeks and forehead: skin wherever the face is lit.
    skin_mask = _mask(shape, discs=[(xy[i], 0.09 * eye_distance) for i in CHEEKS_AND_FOREHEAD])
    brightness = float(ycc[..., 0][skin_mask].mean())
    # Detail at the full crop's scale, relative to the face's contrast, over the box
    # from the eyes to the mouth: a photo with a small or blurred face gives a crop
    # without fine detail.
    box = np.concatenate([right_eye, left_eye, xy[list(OUTER_LIPS)]]) * MEASURE_SCALE
    (x0, y0), (x1, y1) = np.clip(box.min(0), 0, None).astype(int), np.ceil(box.max(0)).astype(int) + 1
    grey = cv2.cvtColor(np.ascontiguousarray(crop[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if grey.size < 16:
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = cv2.Laplacian(grey, cv2.CV_32F)
    sharpness = float(np.sqrt((detail ** 2).mean())) / (float(grey.std()) + 1.0)
    scale = float(np.sqrt(abs(np.linalg.det(np.asarray(affine, np.float64)[:, :2]))))
    return FaceMeasures(yaw, pitch, covered, max(eyes), strands, brightness, sharpness, eye_distance * MEASURE_SCALE / max(scale, 1e-6))


def _face_ellipse(shape: tuple[int, int], xy: np.ndarray) -> np.ndarray:
    """The face as an ellipse through the cheeks, forehead top and chin (SKIN_REFERENCE_SPAN
    of their spans), turned with the cheek-to-cheek line."""
    left, right, top, chin = xy[CHEEK_LEFT], xy[CHEEK_RIGHT], xy[FOREHEAD_TOP], xy[CHIN]
    centre = (left + right + top + chin) / 4
    across = np.linalg.norm(right - left) / 2 * SKIN_REFERENCE_SPAN
    along = np.linalg.norm(chin - top) / 2 * SKIN_REFERENCE_SPAN
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), (max(1, int(across)), max(1, int(along))),
                angle, 0, 360, 1, -1)
    return mask.astype(bool)


def _strand_share(crop: np.ndarray, xy: np.ndarray, eye_distance: float) -> float:
    """Share of the mid-face (crop pixels, eyes' surroundings and nostrils left out)
    on thin dark lines: morphological black-hat against the skin's median luma."""
    side = max(3, int(round(STRAND_KERNEL_IOD * eye_distance)) | 1)
    brows = xy[list(RIGHT_BROW) + list(LEFT_BROW)]
    left, right = sorted((xy[CHEEK_LEFT, 0], xy[CHEEK_RIGHT, 0]))
    centre, half = (left + right) / 2, STRAND_BAND_HALF_WIDTH * (right - left) / 2
    y0, y1 = (int(np.clip(v, 0, crop.shape[0])) for v in (brows[:, 1].max(), xy[NOSE_BASE, 1]))
    x0, x1 = (int(np.clip(v, 0, crop.shape[1])) for v in (centre - half, centre + half))
    if y1 <= y0 or x1 <= x0:
        return 0.0
    # Only the band and a kernel's margin around it are filtered.
    top, bottom = max(0, y0 - side), min(crop.shape[0], y1 + side)
    first, last = max(0, x0 - side), min(crop.shape[1], x1 + side)
    grey = cv2.cvtColor(np.ascontiguousarray(crop[top:bottom, first:last]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    lines = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    band = np.zeros(grey.shape, bool)
    band[y0 - top : y1 - top, x0 - first : x1 - first] = True
    at = xy - (first, top)
    left_out = _mask(grey.shape, polygons=[at[list(RIGHT_BROW)], at[list(LEFT_BROW)]], discs=[
        (at[list(RIGHT_EYE)].mean(0), STRAND_EYE_RADIUS_IOD * eye_distance),
        (at[list(LEFT_EYE)].mean(0), STRAND_EYE_RADIUS_IOD * eye_distance),
        (at[NOSE_TIP], STRAND_NOSE_TIP_RADIUS_IOD * eye_distance),
    ])
    region = band & ~left_out
    if not region.any():
        return 0.0
    skin_luma = float(np.median(grey[region]))
    dark = ((lines > STRAND_CONTRAST * skin_luma) & region).astype(np.uint8)
    # Lines, not dots (freckles, pores): pieces at least STRAND_MIN_LENGTH kernels long.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    long = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= STRAND_MIN_LENGTH * side
    long[0] = False  # the background
    return float(long[labels][region].mean())


def _ramp(value: float, good: float, bad: float) -> float:
    """1 at `good`, 0 at `bad`, linear between (either direction)."""
    return float(np.clip((value - bad) / (good - bad), 0.0, 1.0))


def assess(measures: FaceMeasures, limits: QualityLimits) -> Assessment:
    """Raises FaceError with FACE_POSE_UNSUPPORTED, FACE_OCCLUDED or FACE_QUALITY_LOW;
    otherwise the quality score and warnings."""
    m, lim = measures, limits
    turn_deg = turn_degrees(m.yaw_deg, m.pitch_deg)
    if turn_deg > lim.max_turn_deg:
        raise FaceError(
            f"the head is turned {m.yaw_deg:+.0f} degrees and nodded {m.pitch_deg:+.0f} degrees, {turn_deg:.0f} "
            f"away from the camera; at most {lim.max_turn_deg:g} can be fused: send a photo looking at the camera",
            Reason.FACE_POSE_UNSUPPORTED,
        )
    if m.covered["eyes"] > lim.max_eyes_covered:
        raise FaceError(
            f"{m.covered['eyes']:.0%} of the skin around the eyes is covered (sunglasses, a hand, hair or an "
            "object); send a photo with the eyes, nose and mouth visible",
            Reason.FACE_OCCLUDED,
        )
    if m.worst_eye_covered > lim.max_one_eye_covered:
        raise FaceError(
            f"{m.worst_eye_covered:.0%} of the skin around one eye is covered (hair, a hand or an object); "
            "send a photo with both eyes, the nose and the mouth visible",
            Reason.FACE_OCCLUDED,
        )
    if m.covered["chin"] > lim.max_mouth_covered:
        raise FaceError(
            f"{m.covered['chin']:.0%} of the skin below the lips is covered (a cup, a phone, a hand or a mask); "
            "send a photo with the mouth and chin visible",
            Reason.FACE_OCCLUDED,
        )
    if m.strands > lim.max_strands:
        raise FaceError(
            f"hair strands (or other thin dark lines) cross {m.strands:.0%} of the face between the brows and the "
            f"nose, at most {lim.max_strands:.0%} can be fused; send a photo with the hair away from the face",
            Reason.FACE_OCCLUDED,
        )
    # Strands past their warning with an eye past its own: the strands cross that eye, and
    # the fuse draws them as dark lines through it (a drawn-strands photo from the
    # development set: 4.5% strands, 56% of one eye's skin covered; docs/quality.md).
    if m.strands > lim.warn_strands and m.worst_eye_covered > lim.warn_one_eye_covered:
        raise FaceError(
            f"hair strands (or other thin dark lines) cross {m.strands:.0%} of the face between the brows and the "
            f"nose and cover {m.worst_eye_covered:.0%} of the skin around one eye; send a photo with the hair away "
            "from the eyes",
            Reason.FACE_OCCLUDED,
        )
    if m.brightness < lim.min_brightness or m.sharpness < lim.min_sharpness:
        raise FaceError(
            f"the face is too dark or too blurred to fuse (brightness {m.brightness:.0f} of 255, at least "
            f"{lim.min_brightness:g}; sharpness {m.sharpness:.3f}, at least {lim.min_sharpness:g}); "
            "send a sharper photo in better light",
            Reason.FACE_QUALITY_LOW,
        )
    turn = turn_deg / lim.max_turn_deg
    warn_turn = lim.warn_turn_deg / lim.max_turn_deg
    scores = {
        "STRONG_HEAD_TURN": _ramp(turn, warn_turn, 1.0 + (1.0 - warn_turn)),
        "FACE_PARTLY_OCCLUDED": min(
            _ramp(max(m.covered.values()), lim.warn_covered, 2 * lim.max_eyes_covered - lim.warn_covered),
            _ramp(m.worst_eye_covered, lim.warn_one_eye_covered, 2 * lim.max_one_eye_covered - lim.warn_one_eye_covered),
            _ramp(m.strands, lim.warn_strands, 2 * lim.max_strands - lim.warn_strands),
        ),
        "LOW_LIGHT": _ramp(m.brightness, lim.warn_brightness, 2 * lim.min_brightness - lim.warn_brightness),
        "BLURRED": _ramp(m.sharpness, lim.warn_sharpness, 2 * lim.min_sharpness - lim.warn_sharpness),
        "LOW_RESOLUTION": _ramp(m.eye_distance_px, lim.warn_eye_distance_px, lim.warn_eye_distance_px / 3),
    }
    warnings = tuple(name for name in WARNINGS if scores[name] < 1.0)
    # Each factor halves the score at its refusal limit; the score is their product.
    quality = float(np.prod([0.5 + 0.5 * s for s in scores.values()]))
    return Assessment(round(quality, 3), warnings)
