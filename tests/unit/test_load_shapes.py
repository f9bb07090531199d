import pytest

from facefuse.capacity.shapes import ShapeParams, ramp_levels, users_at


def test_ramp_doubles_up_to_the_maximum_then_stops():
    assert ramp_levels(12) == [1, 2, 4, 8, 12]
    p = ShapeParams(max_users=8, step_s=5)
    assert [users_at("ramp", t, p) for t in (0, 4.9, 5, 10, 15)] == [1, 1, 2, 4, 8]
    assert users_at("ramp", 20, p) is None


def test_steady_holds_then_stops():
    p = ShapeParams(max_users=6, duration_s=10)
    assert users_at("steady", 0, p) == 6 and users_at("steady", 9.9, p) == 6
    assert users_at("steady", 10, p) is None


def test_spike_jumps_in_the_middle_and_returns_to_base():
    p = ShapeParams(max_users=16, duration_s=30, spike_factor=4, spike_s=6)
    assert users_at("spike", 0, p) == 4
    assert users_at("spike", 15, p) == 16
    assert users_at("spike", 25, p) == 4
    assert users_at("spike", 30, p) is None


def test_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="unknown load shape"):
        users_at("zigzag", 0, ShapeParams())
