"""How a stage answers each request of a batch: results and failures as plain data."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from facefuse.errors import FaceError, Reason
from facefuse.server.responses import failure, run_batched


def doubled(feeds):
    return [feeds["x"] * 2]


def test_requests_of_one_shape_run_as_one_batch_and_come_back_split():
    calls = []

    def run(feeds):
        calls.append(feeds["x"].shape)
        return doubled(feeds)

    feeds = [{"x": np.full((1, 3), i, np.float32)} for i in range(3)]
    results = run_batched(run, feeds)
    assert calls == [(3, 3)]
    assert [r[0].tolist() for r in results] == [[[0, 0, 0]], [[2, 2, 2]], [[4, 4, 4]]]


def test_a_mixed_shape_batch_answers_every_request_with_its_own_result():
    feeds = [{"x": np.ones((1, 3), np.float32)}, {"x": np.ones((1, 5), np.float32)}, {"x": np.ones((2, 3), np.float32)}]
    results = run_batched(doubled, feeds)
    assert [r[0].shape for r in results] == [(1, 3), (1, 5), (2, 3)]
    assert all((r[0] == 2).all() for r in results)


def test_in_a_mixed_shape_batch_a_failing_request_fails_alone():
    def run(feeds):
        if feeds["x"].shape[1] == 5:
            raise ValueError("bad width")
        return doubled(feeds)

    results = run_batched(run, [{"x": np.ones((1, 3), np.float32)}, {"x": np.ones((1, 5), np.float32)}])
    assert isinstance(results[1], ValueError) and results[0][0].shape == (1, 3)


def test_a_typed_failure_keeps_its_reason_and_message_for_the_caller():
    code, message = failure(FaceError("no face found in the photo"), "req-1")
    assert code == "INVALID_ARG" and "no face found" in message


def test_an_unexpected_failure_is_logged_with_its_details_and_the_caller_gets_only_the_reason(caplog):
    with caplog.at_level(logging.ERROR, logger="facefuse.server"):
        code, message = failure(KeyError("/work/secret/path.npz"), "req-42")
    assert code == "INTERNAL"
    assert message.startswith(Reason.INTERNAL.value) and "req-42" in message
    assert "KeyError" not in message and "/work/secret" not in message
    assert "req-42" in caplog.text and "/work/secret/path.npz" in caplog.text


@pytest.mark.parametrize("feeds", [[]])
def test_an_empty_batch_has_no_answers(feeds):
    assert run_batched(doubled, feeds) == []
