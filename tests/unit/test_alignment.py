import cv2
import numpy as np

from facefuse.vision.alignment import (
    CANONICAL_KEYPOINTS, crop_affine, inside_image, invert_affine, scale_crops, warp_to_crop, working_crop_px,
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


def symmetric_face_photo(size: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """A photo whose content is mirror-symmetric about the face's vertical centre line
    (a face with a cheek beyond each eye), and the face's keypoints."""
    keypoints = CANONICAL_KEYPOINTS * 300 + 150  # the crop spans 150..450, centre line x = 300
    rng = np.random.default_rng(3)
    half = cv2.GaussianBlur(rng.integers(60, 200, (size, size // 2, 3), dtype=np.uint8), (0, 0), 2.0)
    return np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], 1)), keypoints


def test_inside_image_marks_the_crop_pixels_that_come_from_the_photo():
    photo, keypoints = symmetric_face_photo()
    affine = crop_affine(keypoints, 384)
    assert inside_image(photo.shape, affine, 384) is None  # the usual case: all inside
    cut = photo[:, 200:]  # the frame through the face's left cheek: crop x < (200 - 150) * 384 / 300
    inside = inside_image(cut.shape, crop_affine(keypoints - [200, 0], 384), 384)
    edge = (200 - 150) * 384 / 300
    assert not inside[:, : int(edge) - 1].any() and inside[:, int(edge) + 1 :].all()


def test_a_cheek_cut_off_by_the_frame_is_filled_from_the_other_side_not_streaked():
    photo, keypoints = symmetric_face_photo()
    whole = warp_to_crop(photo, crop_affine(keypoints, 384), 384).astype(np.float32)
    cut = warp_to_crop(np.ascontiguousarray(photo[:, 200:]), crop_affine(keypoints - [200, 0], 384), 384).astype(np.float32)
    beyond = (slice(None), slice(0, 56))  # past the frame's edge (crop x < 64), clear of the blend
    replicated = np.abs(np.repeat(whole[:, 64:65], 56, 1) - whole[beyond]).mean()
    assert np.abs(cut[beyond] - whole[beyond]).mean() < 0.2 * replicated
    assert np.abs(cut[:, 80:] - whole[:, 80:]).max() <= 1  # what the photo holds is kept


def test_a_forehead_cut_by_the_top_edge_is_a_smooth_continuation_not_streaks():
    photo, keypoints = symmetric_face_photo()
    cut = warp_to_crop(np.ascontiguousarray(photo[200:]), crop_affine(keypoints - [0, 200], 384), 384).astype(np.float32)
    above, below = cut[:50], cut[80:130]  # past the edge (crop y < 64) and inside the photo
    # Replicated edge pixels would keep the edge row's detail in every row (streaks).
    across = lambda rows: np.abs(np.diff(rows, axis=1)).mean()
    assert across(above) < 0.25 * across(below)
