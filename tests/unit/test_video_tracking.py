"""Following a face through a clip and steadying its keypoints over time."""

import numpy as np

from facefuse.video import tracking
from facefuse.vision.detection import Detection

FRONTAL = np.array([[100, 100], [140, 100], [120, 125], [105, 145], [135, 145]], np.float32)


def _detection(x0: float, y0: float, side: float = 80.0) -> Detection:
    return Detection(np.array([x0, y0, x0 + side, y0 + side], np.float32), 0.99, FRONTAL + [x0, y0])


def test_follow_keeps_the_face_that_overlaps_the_previous_one_over_a_larger_one():
    previous = np.array([100, 100, 180, 180], np.float32)
    near = _detection(105, 102)
    larger_elsewhere = _detection(400, 100, side=200)
    assert tracking.follow([larger_elsewhere, near], previous) is near


def test_follow_reports_the_face_lost_when_nothing_overlaps():
    previous = np.array([100, 100, 180, 180], np.float32)
    assert tracking.follow([_detection(400, 400)], previous) is None
    assert tracking.follow([], previous) is None


def test_turn_ratio_is_zero_for_a_frontal_face_and_grows_as_the_nose_moves_sideways():
    assert tracking.turn_ratio(FRONTAL) < 0.01
    turned = FRONTAL.copy()
    turned[2, 0] += 18  # nose 18 px toward the right eye, eye distance 40 px
    assert abs(tracking.turn_ratio(turned) - 0.45) < 0.01
    assert tracking.turn_ratio(turned) > tracking.MAX_TURN_RATIO


def test_usable_runs_splits_at_unusable_frames():
    valid = np.array([True, True, False, True, False, False, True])
    assert tracking.usable_runs(valid) == [(0, 2), (3, 4), (6, 7)]


def test_smoothing_removes_frame_to_frame_jitter_but_keeps_a_steady_motion():
    rng = np.random.default_rng(0)
    frames = 60
    motion = np.linspace(0, 60, frames)[:, None, None] + FRONTAL[None]  # a face moving 1 px per frame
    jittery = motion + rng.normal(0, 2.0, motion.shape)
    valid = np.ones(frames, bool)
    smoothed = tracking.smooth_over_time(jittery.astype(np.float32), valid)
    jitter_before = np.abs(np.diff(jittery - motion, axis=0)).mean()
    jitter_after = np.abs(np.diff(smoothed - motion, axis=0)).mean()
    assert jitter_after < jitter_before / 3
    # No lag: the smoothed track stays on the true one (centred kernel), ends included.
    assert np.abs(smoothed - motion).mean() < 1.5
    assert np.abs(smoothed[[0, -1]] - motion[[0, -1]]).max() < 4.0


def test_smoothing_does_not_average_across_a_lost_face_and_leaves_unusable_frames_alone():
    values = np.zeros((10, 2), np.float32)
    values[5:] = 100.0
    values[4] = -7.0  # an unusable frame between two runs
    valid = np.ones(10, bool)
    valid[4] = False
    smoothed = tracking.smooth_over_time(values, valid)
    assert np.allclose(smoothed[:4], 0.0)
    assert np.allclose(smoothed[5:], 100.0)
    assert np.allclose(smoothed[4], -7.0)
