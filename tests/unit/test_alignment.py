import numpy as np

from facefuse.vision.alignment import CANONICAL_KEYPOINTS, crop_affine, invert_affine, warp_to_crop


def test_keypoints_land_on_the_canonical_positions_after_a_similarity():
    angle, scale, shift = np.deg2rad(20), 2.5, np.array([300.0, 120.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = CANONICAL_KEYPOINTS * 100 @ rotation.T + shift  # a tilted, larger face in a photo
    affine = crop_affine(keypoints, 384)
    mapped = keypoints @ affine[:, :2].T + affine[:, 2]
    np.testing.assert_allclose(mapped, CANONICAL_KEYPOINTS * 384, atol=1e-3)


def test_inverse_affine_maps_crop_back_to_the_photo():
    keypoints = CANONICAL_KEYPOINTS * 150 + 40
    affine = crop_affine(keypoints, 384)
    inverse = invert_affine(affine)
    back = (CANONICAL_KEYPOINTS * 384) @ inverse[:, :2].T + inverse[:, 2]
    np.testing.assert_allclose(back, keypoints, atol=1e-2)


def test_crop_of_a_large_face_is_anti_aliased():
    # A fine checkerboard shrunk 4x must come out near mid-grey, not aliased stripes.
    board = (np.indices((2000, 2000)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.stack([board] * 3, -1)
    keypoints = CANONICAL_KEYPOINTS * 384 * 4 + 100
    crop = warp_to_crop(image, crop_affine(keypoints, 384), 384)
    assert crop.shape == (384, 384, 3)
    assert abs(float(crop.mean()) - 127.5) < 10 and float(crop.std()) < 20
