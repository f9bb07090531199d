"""The check every fused face gets before the poster ships, on a synthetic face."""

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
    assert 0 < verdict.quality <= 1


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
