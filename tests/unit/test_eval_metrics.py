"""The eval's image measures on real photos (no server, no models)."""

import cv2
import numpy as np
import pytest

from facefuse import samples
from facefuse.eval import metrics

# Grace Hopper's eyes, nose and mouth corners in matplotlib's 512x600 portrait
# (the detector's keypoints, rounded).
HOPPER_KEYPOINTS = np.array([[213, 254], [299, 255], [257, 303], [219, 345], [293, 346]], np.float64)


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return samples.rgb(samples.grace_hopper())


def test_a_face_is_exactly_as_sharp_as_itself(hopper):
    assert metrics.sharpness_ratio(hopper, hopper, HOPPER_KEYPOINTS) == pytest.approx(1.0)


def test_a_blurred_poster_scores_lower_sharpness_the_more_it_is_blurred(hopper):
    ratios = [metrics.sharpness_ratio(cv2.GaussianBlur(hopper, (0, 0), sigma), hopper, HOPPER_KEYPOINTS)
              for sigma in (0.8, 1.5, 3.0)]
    assert ratios[0] < 0.8
    assert ratios[0] > ratios[1] > ratios[2]


def test_the_inner_face_covers_eyes_nose_and_mouth_but_not_the_image_corners(hopper):
    mask = metrics.inner_face_mask(hopper.shape, HOPPER_KEYPOINTS)
    for x, y in HOPPER_KEYPOINTS.astype(int):
        assert mask[y, x]
    assert not mask[0, 0] and not mask[-1, -1]


def test_keypoint_error_is_in_inter_ocular_units():
    expected = HOPPER_KEYPOINTS
    iod = metrics.inter_ocular(expected)
    assert metrics.keypoint_error(expected, expected) == 0.0
    assert metrics.keypoint_error(expected + [iod * 0.1, 0.0], expected) == pytest.approx(0.1)


def test_a_pasted_face_with_a_hard_edge_scores_a_seam_and_a_feathered_one_does_not(hopper):
    centre = tuple(HOPPER_KEYPOINTS.mean(axis=0).astype(int))
    region = np.zeros(hopper.shape[:2], np.uint8)
    cv2.ellipse(region, centre, (90, 115), 0, 0, 360, 1, -1)
    other = np.full_like(hopper, (200, 160, 140))  # a flat skin-coloured "face"
    hard = np.where(region[..., None] > 0, other, hopper)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 12)[..., None]
    soft = (other * alpha + hopper * (1 - alpha)).astype(np.uint8)
    assert metrics.seam_ratio(hard, hopper, HOPPER_KEYPOINTS) > 1.2
    assert metrics.seam_ratio(soft, hopper, HOPPER_KEYPOINTS) < metrics.seam_ratio(hard, hopper, HOPPER_KEYPOINTS)
    assert metrics.seam_ratio(hopper, hopper, HOPPER_KEYPOINTS) is None  # nothing was pasted


def test_the_changed_region_is_where_the_poster_differs(hopper):
    poster = hopper.copy()
    poster[100:200, 150:300] = 0
    region = metrics.changed_region(poster, hopper)
    assert region[150, 200] and not region[50, 50]
    assert region.sum() == pytest.approx(100 * 150, rel=0.05)


def test_a_similarity_paste_of_a_face_onto_its_own_keypoints_is_the_face(hopper):
    pasted = metrics.similarity_paste(hopper, HOPPER_KEYPOINTS, HOPPER_KEYPOINTS, hopper.shape)
    assert np.abs(pasted.astype(int) - hopper).max() <= 1
    assert metrics.sharpness_vs_source(hopper, hopper, HOPPER_KEYPOINTS, HOPPER_KEYPOINTS) == pytest.approx(1.0, abs=0.02)


def test_summary_reports_median_and_extremes_of_present_values():
    assert metrics.summary([0.2, None, 0.6, 0.4]) == {"n": 3, "median": 0.4, "min": 0.2, "max": 0.6}
    assert metrics.summary([None])["median"] is None
