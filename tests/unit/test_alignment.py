import cv2
import numpy as np

from facefuse.vision.alignment import (
    CANONICAL_KEYPOINTS, crop_affine, invert_affine, scale_crops, warp_to_crop, working_crop_px,
)


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


def test_the_working_size_is_the_smallest_that_shows_the_face_at_its_poster_size():
    def affine_for_eye_distance(eye_distance_px):
        return crop_affine(CANONICAL_KEYPOINTS * eye_distance_px / 0.25 + 50, 384)[None]

    # The crop spans 4 eye distances: a face with eyes 40 px apart fills 160 poster px.
    assert working_crop_px(affine_for_eye_distance(40)) == 192
    assert working_crop_px(affine_for_eye_distance(60)) == 256
    assert working_crop_px(affine_for_eye_distance(78)) == 320
    assert working_crop_px(affine_for_eye_distance(120)) == 384  # larger than any: the largest
    # Several faces share one size: the largest face decides.
    both = np.concatenate([affine_for_eye_distance(40), affine_for_eye_distance(78)])
    assert working_crop_px(both) == 320


def test_scaled_crops_keep_crop_points_and_affines_consistent():
    keypoints = CANONICAL_KEYPOINTS * 100 + 30
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    affine = crop_affine(keypoints, 384)
    face = warp_to_crop(image, affine, 384)[None]
    mesh = np.concatenate([CANONICAL_KEYPOINTS * 384, np.full((5, 1), 10.0)], 1)[None].astype(np.float32)
    small_face, small_mesh, small_affine = scale_crops(face, mesh, affine[None], 192)
    assert small_face.shape == (1, 192, 192, 3)
    # The scaled affine still maps the photo's keypoints onto the scaled mesh points.
    mapped = keypoints @ small_affine[0, :, :2].T + small_affine[0, :, 2]
    np.testing.assert_allclose(mapped, small_mesh[0, :, :2], atol=1e-3)
    np.testing.assert_allclose(small_mesh[0, :, 2], 5.0)
    # and a crop cut at that size straight from the photo matches the scaled pixels.
    direct = warp_to_crop(cv2.GaussianBlur(image, (0, 0), 1.0), small_affine[0], 192)
    scaled = cv2.resize(warp_to_crop(cv2.GaussianBlur(image, (0, 0), 1.0), affine, 384), (192, 192), interpolation=cv2.INTER_AREA)
    assert np.abs(direct.astype(int) - scaled).mean() < 6
