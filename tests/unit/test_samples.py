"""The sample templates' retouch: Grace Hopper's glasses' ends painted out."""

import numpy as np

from facefuse import samples

SKIN = (200, 140, 100)
# The texture carried from below reaches a few pixels past the grown mask.
REACH_PX = samples.RETOUCH_GROW_PX + 4


def grown(shape: tuple[int, ...], boxes, by: int) -> np.ndarray:
    inside = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(y0 - by, 0):y1 + by, max(x0 - by, 0):x1 + by] = True
    return inside


def test_a_rim_a_hinge_and_a_glint_in_the_box_are_painted_out_and_nothing_outside_it_changes():
    image = np.full((70, 90, 3), SKIN, np.uint8)
    image[20:24, 24:40] = 20  # a black rim
    image[30:34, 25:30] = (100, 105, 110)  # a blue-grey hinge
    image[26:28, 32:34] = 250  # a white glint
    image[20:24, 60:80] = 20  # a rim outside the box
    box = (20, 15, 45, 40)
    result = samples.painted_out(image, (box,))
    x0, y0, x1, y1 = box
    assert (np.abs(result[y0:y1, x0:x1].astype(int) - SKIN).max(-1) < 30).all()
    outside = ~grown(image.shape, (box,), REACH_PX)
    assert (result[outside] == image[outside]).all()


def test_the_blue_backdrop_beside_the_glasses_stays_blue_and_away_from_it_untouched():
    image = np.full((70, 90, 3), SKIN, np.uint8)
    image[:, 45:] = (70, 110, 200)  # the blue background beside the temple
    image[20:24, 24:45] = 20  # a rim up to it
    result = samples.painted_out(image, ((20, 15, 60, 40),))
    assert (result[:, 50:] == image[:, 50:]).all()
    beside = result[:, 45:50].astype(int)
    assert (beside[..., 2] - beside[..., 0] > samples.BACKDROP_BLUE_OVER_RED).all()  # still the backdrop's blue
    assert (result[20:24, 24:45].astype(int) @ np.array([299, 587, 114]) > 100 * 1000).all()  # the rim is gone


def test_the_hopper_template_photo_differs_from_hers_only_at_her_glasses_ends():
    original = samples.rgb(samples.grace_hopper())
    retouched = samples.hopper_template_photo()
    changed = (retouched != original).any(-1)
    assert changed.any()
    assert not changed[~grown(original.shape, samples.HOPPER_GLASSES_ENDS, REACH_PX)].any()

    def black(image: np.ndarray) -> int:  # at her right temple: the rim's end and the hinge
        return int(((image[168:192, 328:358].astype(int) @ np.array([299, 587, 114])) < 50 * 1000).sum())

    assert black(original) > 150
    assert black(retouched) == 0


def test_a_sample_made_differently_since_it_was_registered_is_registered_again(tmp_path):
    from facefuse.templates import TemplateArtifact, TemplateStore

    store = TemplateStore(tmp_path)
    store.add(TemplateArtifact(
        template_id="hopper-portrait", version=0, image=np.zeros((40, 60, 3), np.uint8),
        faces=np.zeros((1, 8, 8, 3), np.uint8), meshes=np.zeros((1, 468, 3), np.float32),
        affines=np.eye(2, 3, dtype=np.float32)[None], boxes=np.zeros((1, 5), np.float32), source="the photo as it was",
    ))
    assert samples.is_registered(store, "hopper-portrait", "the photo as it was")
    assert not samples.is_registered(store, "hopper-portrait", "the photo, retouched")
    assert not samples.is_registered(store, "astronaut-poster", "the photo as it was")
