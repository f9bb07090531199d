import numpy as np
import pytest

from facefuse.contract import detector_prior_count
from facefuse.errors import FaceError, Reason
from facefuse.stages.align import AlignParams, detect_in_tiles
from facefuse.vision.detection import (
    Detection, check_face, choose_main_face, decode_detections, faces_left_to_right, letterbox,
    merge_tile_detections, prior_boxes, tiles,
)


def test_prior_count_matches_the_contract_for_both_profiles():
    for size in (320, 640):
        assert prior_boxes(size).shape == (detector_prior_count(size), 4)


def test_priors_follow_pytorch_retinaface_order():
    priors = prior_boxes(320)
    # First cell of stride 8: centre (4, 4) px, sizes 16 then 32.
    np.testing.assert_allclose(priors[0], [4 / 320, 4 / 320, 16 / 320, 16 / 320])
    np.testing.assert_allclose(priors[1], [4 / 320, 4 / 320, 32 / 320, 32 / 320])
    # Next cell moves along x first.
    np.testing.assert_allclose(priors[2][:2], [12 / 320, 4 / 320])
    # Stride 16 starts after 40*40*2 anchors.
    np.testing.assert_allclose(priors[3200], [8 / 320, 8 / 320, 64 / 320, 64 / 320])


def _raw_for(prior_index: int, size: int = 320, prob: float = 0.99):
    n = detector_prior_count(size)
    box_deltas = np.zeros((n, 4), np.float32)
    probs = np.zeros(n, np.float32)
    keypoints = np.zeros((n, 10), np.float32)
    probs[prior_index] = prob
    return box_deltas, probs, keypoints


def test_zero_deltas_decode_to_the_prior_box_in_image_pixels():
    box_deltas, probs, keypoints = _raw_for(3200)  # centre (8, 8), size 64 at stride 16
    dets = decode_detections(box_deltas, probs, keypoints, 320, image_scale=0.5, score_threshold=0.5, nms_iou=0.4)
    assert len(dets) == 1
    # Detector pixels / 0.5 -> image pixels.
    np.testing.assert_allclose(dets[0].box, [(8 - 32) * 2, (8 - 32) * 2, (8 + 32) * 2, (8 + 32) * 2], atol=1e-3)
    np.testing.assert_allclose(dets[0].keypoints, np.full((5, 2), 16.0), atol=1e-3)


def test_nms_keeps_one_of_two_overlapping_boxes_and_the_better_one():
    box_deltas, probs, keypoints = _raw_for(3200, prob=0.8)
    probs[3201] = 0.95  # same cell, 128 px anchor: overlaps the 64 px one by IoU 0.25 -> kept
    probs[3202] = 0.9  # neighbouring cell, 64 px: IoU with the first > 0.4 -> suppressed
    dets = decode_detections(box_deltas, probs, keypoints, 320, 1.0, 0.5, 0.4)
    assert [round(d.score, 2) for d in dets] == [0.95, 0.9]


def test_nothing_above_threshold_gives_no_detection():
    box_deltas, probs, keypoints = _raw_for(10, prob=0.3)
    assert decode_detections(box_deltas, probs, keypoints, 320, 1.0, 0.5, 0.4) == []


def _det(x0, y0, x1, y1, score=0.99):
    box = np.array([x0, y0, x1, y1], np.float32)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    keypoints = np.array([[cx - 5, cy - 5], [cx + 5, cy - 5], [cx, cy], [cx - 4, cy + 6], [cx + 4, cy + 6]], np.float32)
    return Detection(box, score, keypoints)


def test_main_face_is_the_central_subject_not_a_slightly_larger_neighbour_at_the_edge():
    subject = _det(400, 300, 600, 520)  # 200x220 in the middle
    neighbour = _det(0, 280, 230, 520)  # 230x240 at the border
    assert choose_main_face([neighbour, subject], (800, 1000, 3)) is subject


def test_no_detection_is_no_face_detected():
    with pytest.raises(FaceError) as info:
        choose_main_face([], (100, 100, 3))
    assert info.value.reason is Reason.NO_FACE_DETECTED


def test_small_face_is_refused_with_face_too_small():
    with pytest.raises(FaceError) as info:
        check_face(_det(10, 10, 40, 45), (200, 200, 3), min_face_px=34, max_outside_fraction=0.1)
    assert info.value.reason is Reason.FACE_TOO_SMALL


def test_face_cut_by_the_border_is_refused_with_face_exceeds_border():
    with pytest.raises(FaceError) as info:
        check_face(_det(-60, 20, 100, 180), (300, 300, 3), min_face_px=34, max_outside_fraction=0.12)
    assert info.value.reason is Reason.FACE_EXCEEDS_BORDER


def test_face_slightly_over_the_border_is_accepted():
    check_face(_det(-5, 20, 150, 180), (300, 300, 3), min_face_px=34, max_outside_fraction=0.12)


def test_template_faces_are_the_largest_numbered_left_to_right():
    faces = [_det(500, 0, 600, 100), _det(0, 0, 120, 120), _det(250, 0, 300, 50), _det(300, 0, 400, 100)]
    chosen = faces_left_to_right(faces, max_faces=3)
    assert [float(d.box[0]) for d in chosen] == [0.0, 300.0, 500.0]


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    image = np.full((100, 200, 3), 255, np.uint8)
    square, scale = letterbox(image, 320)
    assert square.shape == (320, 320, 3) and scale == pytest.approx(1.6)
    assert square[:160].min() == 255 and square[161:].max() == 0


def test_tiles_cover_the_image_with_overlap():
    cover = tiles((1000, 1600, 3), 3)
    assert len(cover) == 9
    covered = np.zeros((1000, 1600), int)
    for x0, y0, x1, y1 in cover:
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1  # every pixel is in a tile
    assert covered[:, 500:560].min() >= 2  # neighbouring tiles overlap at their seam
    assert all(x1 - x0 <= 1600 / 2.4 and y1 - y0 <= 1000 / 2.4 for x0, y0, x1, y1 in cover)


def test_tile_detections_move_to_image_pixels_and_overlap_duplicates_merge():
    face = Detection(np.array([10, 20, 50, 70], np.float32), 0.9, np.full((5, 2), 30, np.float32))
    same_face_seen_by_the_next_tile = Detection(np.array([10 - 400 + 100, 20, 50 - 400 + 100, 70], np.float32), 0.8,
                                                np.full((5, 2), 30, np.float32))
    merged = merge_tile_detections([[face], [same_face_seen_by_the_next_tile]], [(100, 200), (400, 200)], 0.4)
    assert len(merged) == 1
    np.testing.assert_allclose(merged[0].box, [110, 220, 150, 270])
    np.testing.assert_allclose(merged[0].keypoints, np.full((5, 2), [130, 230]))


def test_the_second_pass_runs_the_detector_on_each_tile_and_finds_a_face_in_one():
    image = np.zeros((1200, 1200, 3), np.uint8)
    params = AlignParams(320, second_pass_tiles=3)
    calls = []

    def detect_batch(images):
        calls.append(images.shape)
        n = detector_prior_count(320)
        boxes, probs, keypoints = np.zeros((len(images), n, 4), np.float32), np.zeros((len(images), n), np.float32), \
            np.zeros((len(images), n, 10), np.float32)
        probs[4, 3200] = 0.99  # the middle tile: a 64 px detector box centred at (8, 8)
        return boxes, probs, keypoints

    found = detect_in_tiles(image, params, detect_batch)
    assert calls == [(9, 320, 320, 3)]  # one batch of all nine tiles
    x0, y0, _, _ = tiles(image.shape, 3)[4]
    scale = 320 / max(x1 - x0 for x0, _, x1, _ in [tiles(image.shape, 3)[4]])
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box[:2], [x0 + (8 - 32) / scale, y0 + (8 - 32) / scale], atol=1e-3)


def test_no_second_pass_when_it_is_off_or_the_photo_is_small():
    def detect_batch(images):
        raise AssertionError("the detector should not run again")

    assert detect_in_tiles(np.zeros((1200, 1200, 3), np.uint8), AlignParams(320, second_pass_tiles=0), detect_batch) == []
    assert detect_in_tiles(np.zeros((400, 400, 3), np.uint8), AlignParams(320), detect_batch) == []
