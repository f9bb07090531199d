"""The check every fused face gets before the poster ships, on a synthetic face."""

import cv2
import numpy as np
import pytest

from facefuse.errors import Reason
from facefuse.stages.verify import FusionQualityError, refuse_failed
from facefuse.vision import poster_check as pc

SIZE = 320


def _ring(mesh, points, centre, radii):
    for k, index in enumerate(points):
        a = 2 * np.pi * k / len(points)
        mesh[index, :2] = [centre[0] + radii[0] * np.cos(a), centre[1] + radii[1] * np.sin(a)]


def synthetic_mesh() -> np.ndarray:
    """Eyes, brows, mouth, nose and oval where a frontal face has them (MediaPipe indices)."""
    mesh = np.zeros((468, 3), np.float32)
    mesh[:, :2] = (160, 170)
    _ring(mesh, pc.FACE_OVAL, (160, 170), (110, 135))
    _ring(mesh, pc.RIGHT_EYE, (115, 140), (22, 9))
    _ring(mesh, pc.LEFT_EYE, (205, 140), (22, 9))
    _ring(mesh, pc.RIGHT_BROW, (115, 115), (26, 5))
    _ring(mesh, pc.LEFT_BROW, (205, 115), (26, 5))
    _ring(mesh, pc.OUTER_LIPS, (160, 235), (35, 12))
    _ring(mesh, pc.NOSE, (160, 185), (12, 30))
    return mesh


def face(seed=0) -> np.ndarray:
    """Skin with texture, dark eyes and lips with highlights (features have contrast)."""
    rng = np.random.default_rng(seed)
    image = np.full((SIZE, SIZE, 3), (190, 145, 125), np.float32) + rng.normal(0, 6, (SIZE, SIZE, 3))
    for cx in (115, 205):
        image[133:148, cx - 20 : cx + 20] = (235, 235, 235)
        image[133:148, cx - 7 : cx + 7] = (40, 30, 25)
    image[226:245, 127:193] = (150, 60, 70)
    image[234:237, 127:193] = (70, 20, 30)
    return np.clip(image, 0, 255).astype(np.uint8)


def check(fused, template=None, presence=0.99, found=None):
    mesh = synthetic_mesh()
    return pc.check_fused_face(fused, face(1) if template is None else template, mesh, face(2), mesh,
                               mesh if found is None else found, presence, 0.0)


def test_a_clean_fused_face_passes():
    verdict = check(face(3))
    assert verdict.ok, verdict
    quality, warnings = pc.describe_poster([verdict])
    assert 0.5 < quality <= 1 and warnings == (), (quality, warnings, verdict.margins)


def test_an_eye_filled_with_skin_is_a_lost_feature():
    fused = face(3)
    fused[128:153, 90:140] = (190, 145, 125)
    assert "feature_lost:right_eye" in check(fused).failures


def test_a_smooth_white_blob_on_the_cheek_is_a_blown_highlight_a_textured_white_beard_is_not():
    fused = face(3)
    fused[180:205, 215:245] = (250, 250, 250)
    assert "blown_highlight" in check(fused).failures
    bearded = face(3)
    stripes = np.where((np.arange(30) // 2) % 2 == 0, 250, 150)[None, :, None]
    bearded[180:205, 215:245] = stripes
    assert "blown_highlight" not in check(bearded).failures


def test_a_highlight_the_template_has_there_is_the_template_s_light():
    fused, template = face(3), face(1)
    fused[180:205, 215:245] = (250, 250, 250)
    template[180:205, 215:245] = (245, 245, 245)
    assert check(fused, template).ok


def test_features_found_elsewhere_or_no_face_found_fail():
    moved = synthetic_mesh()
    moved[:, 1] += 30
    assert "features_misplaced" in check(face(3), found=moved).failures
    assert "face_lost" in check(face(3), presence=0.1).failures


def test_two_tone_halves_fail_unless_the_template_is_lit_so():
    fused = face(3).astype(np.int16)
    fused[:, :160] -= 50
    fused = np.clip(fused, 0, 255).astype(np.uint8)
    assert "two_tone" in check(fused).failures
    template = face(1).astype(np.int16)
    template[:, :160] -= 50
    assert "two_tone" not in check(fused, np.clip(template, 0, 255).astype(np.uint8)).failures


def test_a_failed_face_is_refused_with_its_own_reason():
    refuse_failed([check(face(3))])
    with pytest.raises(FusionQualityError) as caught:
        refuse_failed([check(face(3)), check(face(3), presence=0.1)])
    assert caught.value.reason is Reason.FUSION_QUALITY_LOW
    assert "face 1: face_lost" in str(caught.value)


def test_a_blurred_face_ships_marked_soft_with_a_lower_quality():
    sharp = check(face(3))
    soft = check(cv2.GaussianBlur(face(3), (0, 0), 2.0))
    assert soft.ok and soft.measures["sharpness"] < 0.25 <= sharp.measures["sharpness"]
    (sharp_quality, sharp_warnings), (soft_quality, soft_warnings) = (pc.describe_poster([v]) for v in (sharp, soft))
    assert soft_warnings == ("SOFT",) and "SOFT" not in sharp_warnings
    assert soft_quality < sharp_quality


def test_a_poster_is_described_by_its_weakest_face_for_each_check():
    clean = pc.PosterVerdict((), {"presence": 1.0, "contrast_mouth": 1.0, "shine": 1.0})
    shiny = pc.PosterVerdict((), {"presence": 1.0, "contrast_mouth": 0.8, "shine": 0.2})
    faded = pc.PosterVerdict((), {"presence": 1.0, "contrast_left_eye": 0.3, "contrast_mouth": 0.9, "shine": 0.9})
    assert pc.describe_poster([clean]) == (1.0, ())
    assert pc.describe_poster([clean, shiny]) == (round(0.9 * 0.6, 3), ("SHINE",))
    # the contrast checks are one check to the caller: the weakest feature's margin counts once
    assert pc.describe_poster([faded, shiny]) == (round(0.65 * 0.6, 3), ("FEATURES_FADED", "SHINE"))


# The check works inside boxes (each polygon's, the face oval's) for speed; these hold it to
# what the same masks and measures give on the whole crop.

def _whole_crop_mask(points, grow_px=0.0):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [pc._hull(points)], 1)
    if grow_px >= 1:
        size = 2 * round(grow_px) + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask


@pytest.mark.parametrize("offset", [(0, 0), (-110, 0), (0, 140), (120, -120), (-200, 60)])
def test_the_skin_over_the_oval_s_box_is_the_whole_crop_s_skin(offset):
    mesh = synthetic_mesh()
    mesh[:, :2] += offset  # partly out of the crop too
    iod = pc._iod(mesh)
    features = np.zeros((SIZE, SIZE), np.uint8)
    for points in (pc.OUTER_LIPS, pc.RIGHT_BROW, pc.LEFT_BROW):
        features |= _whole_crop_mask(mesh[list(points)], pc.FEATURE_MARGIN_IOD * iod)
    for points in (pc.RIGHT_EYE, pc.LEFT_EYE):
        features |= _whole_crop_mask(mesh[list(points)], pc.LENS_MARGIN_IOD * iod)
    whole = _whole_crop_mask(mesh[list(pc.FACE_OVAL)]) & (1 - features)
    whole = cv2.erode(whole, np.ones((3, 3), np.uint8), iterations=max(1, int(pc.FEATURE_MARGIN_IOD * iod)))

    skin, oval, (x0, y0, x1, y1) = pc._skin_mask(mesh, iod, (SIZE, SIZE, 3))
    boxed, boxed_oval = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE), np.uint8)
    boxed[y0:y1, x0:x1], boxed_oval[y0:y1, x0:x1] = skin, oval
    assert whole.any() and np.array_equal(boxed, whole)
    assert np.array_equal(boxed_oval, _whole_crop_mask(mesh[list(pc.FACE_OVAL)]))


def test_growing_a_mask_from_its_runs_is_dilating_it():
    rng = np.random.default_rng(0)
    for _ in range(300):
        radius, (height, width) = int(rng.integers(1, 30)), rng.integers(3, 120, 2)
        points = rng.normal(0, 1, (int(rng.integers(3, 16)), 2)) * rng.uniform(0.2, 40, 2)
        points += rng.uniform(-10, [width + 10, height + 10])
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [pc._hull(points)], 1)
        assert np.array_equal(pc._grow(mask, radius), cv2.dilate(mask, pc._disc(radius)))
    # Not a convex polygon (two blobs, a ring): dilate itself.
    mask = np.zeros((60, 80), np.uint8)
    mask[10:20, 5:15] = mask[40:45, 50:70] = 1
    ring = cv2.circle(np.zeros((60, 80), np.uint8), (40, 30), 15, 1, 2)
    for mask in (mask, ring):
        assert np.array_equal(pc._grow(mask, 7), cv2.dilate(mask, pc._disc(7)))


def test_texture_over_the_pixels_box_is_the_whole_crop_s():
    luma = cv2.cvtColor(face(4), cv2.COLOR_RGB2YCrCb)[..., 0].copy()
    whole = luma.astype(np.float32) / 255.0
    whole = np.sqrt(np.maximum(cv2.blur(whole * whole, (5, 5)) - cv2.blur(whole, (5, 5)) ** 2, 0))
    rows, columns = np.array([0, 1, 40, 200, 319]), np.array([3, 319, 41, 0, 160])
    assert np.array_equal(pc._texture_at(luma, rows, columns), whole[rows, columns])
    assert np.array_equal(pc._texture_at(luma, rows[2:3], columns[2:3]), whole[rows[2:3], columns[2:3]])


def test_a_feature_s_spread_over_its_box_is_the_whole_crop_s():
    image, mesh = face(5), synthetic_mesh()
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float32) / 255.0
    for points in pc.FEATURES.values():
        inside = luma[_whole_crop_mask(mesh[list(points)]).astype(bool)]
        count, spread = pc._feature_spread(image, mesh[list(points)])
        assert count == inside.size and spread == pytest.approx(float(inside.std()), abs=1e-6)
