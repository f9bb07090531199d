"""Photos that cannot be fused well are refused with their reason; every poster carries
its own quality score and warnings (from the check it passed) and those of the user's
photo. Real photos from the development set (facefuse.eval.devset), through the real
gateway and Triton."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from facefuse_client import InvalidPhotoError
from gateway_helpers import TEMPLATE
from photo_bytes import encoded, rgb_of

from facefuse import samples
from facefuse.eval import devset

REFUSED = {
    # development-set case: the reason (the figures behind the limits are in the README)
    "turned-breakingbad": "FACE_POSE_UNSUPPORTED",  # yaw -40 degrees
    "looking_down-group-face3": "FACE_POSE_UNSUPPORTED",  # yaw -20 and pitch +20: 28 degrees away
    "occluded-sunglasses-terminator_crop": "FACE_OCCLUDED",
    "occluded-hair-audrey": "FACE_OCCLUDED",  # strands across an eye and the cheeks
    "occluded-lock-kim1": "FACE_OCCLUDED",  # a lock of hair over one eye
}


# A face about 90 px wide brought up to the template's: a soft poster (its sharpness
# against Grace Hopper's own face about 0.13, docs/quality.md#poster-verdict).
SMALL_FACE = "small-90px-cage2"


@pytest.fixture(scope="module")
def cases():
    return {case.name: case.data() for case in devset.load(names=(*REFUSED, "turned-franck-v1086", SMALL_FACE))}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_photo_that_would_fuse_badly_is_refused_with_its_reason(client, cases, case):
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse(cases[case], TEMPLATE)
    assert error.value.reason == REFUSED[case]


def test_a_photo_too_dark_to_give_a_sharp_face_is_refused_as_quality_low(client, astronaut):
    dark = encoded((rgb_of(astronaut).astype(np.float32) * 0.12).astype(np.uint8))
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse(dark, TEMPLATE)
    assert error.value.reason == "FACE_QUALITY_LOW"


def test_a_small_face_in_a_large_photo_is_found_by_the_detectors_second_pass(client):
    # Grace Hopper's portrait at 0.4x (a face about 72 px wide) in an 1800 px photo: at
    # the detector's 320 px input the face is 13 px and the first pass misses it.
    hopper = rgb_of(samples.grace_hopper())
    small = cv2.resize(hopper, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    photo = np.full((1800, 1800, 3), 120, np.uint8)
    photo[900 : 900 + small.shape[0], 1100 : 1100 + small.shape[1]] = small
    poster = client.fuse(encoded(photo), TEMPLATE)  # NO_FACE_DETECTED without the second pass
    assert poster.image[:3] == b"\xff\xd8\xff" and poster.quality > 0.5


def test_a_large_photo_with_no_face_anywhere_is_still_no_face_detected(client, coffee):
    # The second pass runs on the tiles and finds nothing either.
    large = cv2.resize(rgb_of(coffee), (1800, 1800), interpolation=cv2.INTER_CUBIC)
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse(encoded(large), TEMPLATE)
    assert error.value.reason == "NO_FACE_DETECTED"


def test_a_clear_frontal_photo_gets_a_high_score_and_no_warnings(client, astronaut):
    poster = client.fuse(astronaut, TEMPLATE)
    assert poster.photo_quality >= 0.9 and poster.photo_warnings == ()


def test_a_turned_head_is_fused_with_a_warning_and_a_lower_score(client, astronaut, cases):
    turned = client.fuse(cases["turned-franck-v1086"], TEMPLATE)  # yaw +22 degrees
    assert "STRONG_HEAD_TURN" in turned.photo_warnings
    assert turned.photo_quality < client.fuse(astronaut, TEMPLATE).photo_quality


def test_a_soft_poster_says_so_in_its_own_warnings_not_the_photo_s(client, grace_hopper, cases):
    # Grace Hopper's own portrait into her template: a poster as sharp as the template
    sharp, soft = client.fuse(grace_hopper, TEMPLATE), client.fuse(cases[SMALL_FACE], TEMPLATE)
    assert sharp.quality >= 0.9 and sharp.warnings == (), (sharp.quality, sharp.warnings)
    assert "SOFT" in soft.warnings and "SOFT" not in soft.photo_warnings
    assert soft.quality < sharp.quality


def test_every_poster_of_fuse_many_carries_the_photo_s_verdict_and_its_own(client, cases):
    posters = client.fuse_many(cases[SMALL_FACE], [TEMPLATE, "astronaut-poster"])
    assert len({(p.photo_quality, p.photo_warnings) for p in posters}) == 1
    alone = [client.fuse(cases[SMALL_FACE], template) for template in (TEMPLATE, "astronaut-poster")]
    # each its own verdict: the same as the same poster made alone (up to the batch's rounding)
    assert [p.warnings for p in posters] == [p.warnings for p in alone]
    assert all(abs(p.quality - a.quality) < 0.05 for p, a in zip(posters, alone))
    assert "SOFT" in posters[0].warnings
