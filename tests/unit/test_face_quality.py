"""The quality gates' maths on constructed faces (no model needed)."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from facefuse.errors import FaceError, Reason
from facefuse.stages.face_quality import check_faces
from facefuse.vision import face_quality as fq

SIZE = 384
LIMITS = fq.QualityLimits()
AFFINE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # the photo is the crop


def _ring(indices, centre, rx, ry):
    angles = np.linspace(0, 2 * np.pi, len(indices), endpoint=False)
    return {i: (centre[0] + rx * np.cos(a), centre[1] + ry * np.sin(a)) for i, a in zip(indices, angles)}


def face_mesh() -> np.ndarray:
    """A flat, frontal face: the points the gates read at plausible places (crop pixels)."""
    mesh = np.zeros((468, 3), np.float32)
    mesh[:, :2] = (192, 200)
    points = {
        **_ring(fq.RIGHT_EYE, (144, 150), 18, 7), **_ring(fq.LEFT_EYE, (240, 150), 18, 7),
        **_ring(fq.RIGHT_BROW, (144, 122), 22, 4), **_ring(fq.LEFT_BROW, (240, 122), 22, 4),
        **_ring(fq.OUTER_LIPS, (192, 262), 30, 10),
        **{i: (192, 160 + 14 * k) for k, i in enumerate(fq.NOSE_RIDGE)}, fq.NOSE_BASE: (192, 238),
        50: (130, 215), 280: (254, 215), 205: (145, 240), 425: (239, 240), 151: (192, 95), 108: (165, 100), 337: (219, 100),
        fq.CHEEK_LEFT: (90, 200), fq.CHEEK_RIGHT: (294, 200), fq.FOREHEAD_TOP: (192, 70), fq.CHIN: (192, 320),
    }
    for index, xy in points.items():
        mesh[index, :2] = xy
    # The frontal lean of the forehead-to-chin line, so a face looking ahead reads pitch 0.
    lean = np.tan(np.radians(fq.FRONTAL_PITCH_DEG)) * 250
    mesh[fq.FOREHEAD_TOP, 2], mesh[fq.CHIN, 2] = -lean / 2, lean / 2
    return mesh


def face_crop(seed=0) -> np.ndarray:
    """Skin with fine texture, dark eyes and brows, red lips."""
    rng = np.random.default_rng(seed)
    crop = np.clip(np.full((SIZE, SIZE, 3), (200, 150, 125), np.float32) + rng.normal(0, 10, (SIZE, SIZE, 3)), 0, 255)
    crop = crop.astype(np.uint8)
    for cx in (144, 240):
        cv2.ellipse(crop, (cx, 150), (16, 6), 0, 0, 360, (60, 40, 30), -1)
        cv2.ellipse(crop, (cx, 122), (20, 3), 0, 0, 360, (70, 50, 40), -1)
    cv2.ellipse(crop, (192, 262), (28, 8), 0, 0, 360, (190, 80, 80), -1)
    return crop


def rotated(mesh: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    about_y = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    centre = np.array([192, 200, 0])
    return ((mesh - centre) @ about_y.T @ about_x.T + centre).astype(np.float32)


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (25.0, 0.0), (-30.0, 0.0), (0.0, 20.0), (0.0, -15.0)])
def test_head_pose_reads_yaw_and_pitch_back_from_a_rotated_mesh(yaw, pitch):
    got_yaw, got_pitch = fq.head_pose_degrees(rotated(face_mesh(), yaw, pitch))
    assert got_yaw == pytest.approx(yaw, abs=2.0)
    assert got_pitch == pytest.approx(pitch, abs=2.5)


def test_a_clear_frontal_face_scores_full_quality_without_warnings():
    verdict = check_faces(face_crop()[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS)
    assert verdict.quality == 1.0 and verdict.warnings == ()


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (26.0, 0.0), (0.0, -20.0), (20.0, 20.0), (-90.0, 0.0)])
def test_the_turn_is_the_angle_between_the_face_and_the_camera(yaw, pitch):
    forward = rotated(np.array([[192.0, 200.0, 0.0], [192.0, 200.0, -1.0]], np.float32), yaw, pitch)
    direction = forward[1] - forward[0]
    assert fq.turn_degrees(yaw, pitch) == pytest.approx(np.degrees(np.arccos(-direction[2])), abs=1e-3)


@pytest.mark.parametrize("yaw, pitch", [(40.0, 0.0), (-30.0, 0.0), (0.0, 35.0), (20.0, 20.0), (-20.0, -20.0)])
def test_a_head_turned_past_the_limit_is_refused_as_pose_unsupported(yaw, pitch):
    """(20, 20): each axis alone under the limit, the face 28 degrees away from the camera."""
    with pytest.raises(FaceError) as caught:
        check_faces(face_crop()[None], rotated(face_mesh(), yaw, pitch)[None], AFFINE[None] * 0.5, LIMITS)
    assert caught.value.reason is Reason.FACE_POSE_UNSUPPORTED


def test_a_stronger_turn_lowers_the_score_and_warns():
    scores = []
    for yaw in (0.0, 10.0, 18.0, 24.0):
        verdict = check_faces(face_crop()[None], rotated(face_mesh(), yaw, 0.0)[None], AFFINE[None] * 0.5, LIMITS)
        scores.append(verdict.quality)
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert "STRONG_HEAD_TURN" in check_faces(
        face_crop()[None], rotated(face_mesh(), 23.0, 0.0)[None], AFFINE[None] * 0.5, LIMITS).warnings


def test_sunglasses_over_both_eyes_are_refused_as_occluded():
    crop = face_crop()
    for cx in (144, 240):
        cv2.ellipse(crop, (cx, 152), (40, 26), 0, 0, 360, (15, 15, 18), -1)
    measures = fq.measure(crop, face_mesh(), AFFINE)
    assert measures.covered["eyes"] > LIMITS.max_eyes_covered
    with pytest.raises(FaceError) as caught:
        fq.assess(measures, LIMITS)
    assert caught.value.reason is Reason.FACE_OCCLUDED


def test_a_lock_of_hair_over_one_eye_is_refused_as_occluded():
    crop = face_crop()
    cv2.ellipse(crop, (240, 148), (46, 38), 0, 0, 360, (45, 30, 20), -1)  # dark hair over the left eye
    measures = fq.measure(crop, face_mesh(), AFFINE)
    assert measures.covered["eyes"] < LIMITS.max_eyes_covered < measures.worst_eye_covered  # the mean alone passes
    assert measures.worst_eye_covered > LIMITS.max_one_eye_covered
    with pytest.raises(FaceError) as caught:
        fq.assess(measures, LIMITS)
    assert caught.value.reason is Reason.FACE_OCCLUDED


def test_freckles_are_not_strands():
    crop, rng = face_crop(), np.random.default_rng(3)
    for x, y in rng.uniform((110, 130), (275, 235), (250, 2)):
        cv2.circle(crop, (int(x), int(y)), 2, (110, 70, 50), -1)  # dark dots over cheeks and nose
    assert fq.measure(crop, face_mesh(), AFFINE).strands < 0.5 * LIMITS.warn_strands


def test_a_cup_over_the_mouth_and_chin_is_refused_but_a_dark_beard_is_not():
    cup, beard = face_crop(), face_crop()
    cv2.ellipse(cup, (192, 300), (70, 40), 0, 0, 360, (235, 235, 230), -1)  # white china over the chin
    cv2.ellipse(beard, (192, 300), (70, 40), 0, 0, 360, (50, 35, 25), -1)
    assert fq.measure(cup, face_mesh(), AFFINE).covered["chin"] > LIMITS.max_mouth_covered
    assert fq.measure(beard, face_mesh(), AFFINE).covered["chin"] < 0.1
    with pytest.raises(FaceError) as refused:
        check_faces(cup[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS)
    assert refused.value.reason == Reason.FACE_OCCLUDED and "mouth" in str(refused.value)
    assert check_faces(beard[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS).warnings == ()


def test_a_small_object_below_the_lips_only_warns():
    crop = face_crop()
    cv2.circle(crop, (192, 300), 17, (235, 235, 230), -1)  # a finger tip, a bottle cap
    covered = fq.measure(crop, face_mesh(), AFFINE).covered["chin"]
    assert LIMITS.warn_covered < covered < LIMITS.max_mouth_covered, covered
    assert "FACE_PARTLY_OCCLUDED" in check_faces(crop[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS).warnings


def strands(crop: np.ndarray, count: int) -> np.ndarray:
    """Dark hair strands, 2 px wide, evenly spaced, falling from the forehead across eyes and cheeks."""
    out = crop.copy()
    for x in np.linspace(110, 280, count):
        cv2.line(out, (int(x), 60), (int(x) + 15, 250), (35, 25, 20), 2, cv2.LINE_AA)
    return out


def test_hair_strands_across_the_face_are_refused_as_occluded():
    measures = fq.measure(strands(face_crop(), 20), face_mesh(), AFFINE)
    assert measures.strands > LIMITS.max_strands
    assert measures.covered["eyes"] < LIMITS.max_eyes_covered  # the colour test alone would let them through
    with pytest.raises(FaceError) as caught:
        fq.assess(measures, LIMITS)
    assert caught.value.reason is Reason.FACE_OCCLUDED


def test_a_few_strands_warn_and_more_score_lower():
    clear = fq.measure(face_crop(), face_mesh(), AFFINE).strands
    few, some = (fq.measure(strands(face_crop(), n), face_mesh(), AFFINE).strands for n in (2, 4))
    assert clear < few < some
    verdict = check_faces(strands(face_crop(), 4)[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS)
    assert "FACE_PARTLY_OCCLUDED" in verdict.warnings and verdict.quality < 1.0


def test_strands_over_a_partly_covered_eye_are_refused_either_alone_only_warns():
    clear = fq.measure(face_crop(), face_mesh(), AFFINE)
    strands_past_warning, eye_past_warning = LIMITS.warn_strands + 0.005, LIMITS.warn_one_eye_covered + 0.01
    with pytest.raises(FaceError) as caught:
        fq.assess(replace(clear, strands=strands_past_warning, worst_eye_covered=eye_past_warning), LIMITS)
    assert caught.value.reason is Reason.FACE_OCCLUDED and "around one eye" in str(caught.value)
    for alone in (replace(clear, strands=strands_past_warning), replace(clear, worst_eye_covered=eye_past_warning)):
        assert "FACE_PARTLY_OCCLUDED" in fq.assess(alone, LIMITS).warnings


def test_a_very_dark_photo_is_refused_as_quality_low():
    crop = (face_crop().astype(np.float32) * 0.1).astype(np.uint8)
    with pytest.raises(FaceError) as caught:
        check_faces(crop[None], face_mesh()[None], AFFINE[None] * 0.5, LIMITS)
    assert caught.value.reason is Reason.FACE_QUALITY_LOW


def test_blur_lowers_the_sharpness_measure():
    crop, mesh = face_crop(), face_mesh()
    sharp = fq.measure(crop, mesh, AFFINE).sharpness
    blurred = fq.measure(cv2.GaussianBlur(crop, (0, 0), 3), mesh, AFFINE).sharpness
    assert blurred < 0.5 * sharp


def test_a_small_face_in_the_photo_warns_low_resolution():
    # The crop was enlarged 4x from the photo: the eyes were 24 px apart there.
    verdict = check_faces(face_crop()[None], face_mesh()[None], AFFINE[None] * 4.0, LIMITS)
    assert "LOW_RESOLUTION" in verdict.warnings and verdict.quality < 1.0


def test_several_faces_give_the_lowest_score_and_every_warning():
    dim = (face_crop().astype(np.float32) * 0.3).astype(np.uint8)
    verdict = check_faces(
        np.stack([face_crop(), dim]), np.stack([face_mesh(), rotated(face_mesh(), 25.0, 0.0)]), np.stack([AFFINE * 0.5] * 2),
        LIMITS,
    )
    assert set(verdict.warnings) >= {"LOW_LIGHT", "STRONG_HEAD_TURN"}
    alone = check_faces(dim[None], rotated(face_mesh(), 25.0, 0.0)[None], AFFINE[None] * 0.5, LIMITS)
    assert verdict.quality == alone.quality < 1.0
