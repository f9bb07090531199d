import numpy as np
import pytest

from facefuse.eval import devset


def test_devset_has_at_least_60_cases_in_every_kind_with_unique_names():
    names = [spec.name for spec in devset.SPECS]
    assert len(names) >= 60
    assert len(set(names)) == len(names)
    assert {spec.kind for spec in devset.SPECS} == set(devset.KINDS)


def test_every_case_names_its_package_version_and_path():
    for spec in devset.SPECS:
        assert spec.origin.package and spec.origin.version and spec.origin.path, spec.name


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (25.0, 0.0), (-30.0, 0.0), (0.0, 20.0), (0.0, -15.0)])
def test_head_pose_reads_yaw_and_pitch_back_from_a_rotated_mesh(yaw, pitch):
    mesh = np.zeros((468, 3))
    mesh[234], mesh[454] = (-1.0, 0.0, 0.0), (1.0, 0.0, 0.0)  # cheeks
    mesh[10], mesh[152] = (0.0, -1.2, 0.0), (0.0, 1.2, 0.0)  # forehead, chin
    a, b = np.radians(yaw), np.radians(pitch)
    # Turning the head (about y) moves the cheeks in depth; nodding (about x) the forehead and chin.
    about_y = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    got_yaw, got_pitch = devset.head_pose_degrees(mesh @ about_y.T @ about_x.T)
    assert got_yaw == pytest.approx(yaw, abs=2.0)
    assert got_pitch == pytest.approx(pitch, abs=2.0)


def test_an_unknown_transform_is_refused_by_name():
    spec = devset.CaseSpec("x", "frontal", devset.ASTRONAUT, ("sharpen:3",))
    with pytest.raises(ValueError, match="sharpen"):
        devset._apply(spec, np.zeros((8, 8, 3), np.uint8), faces=None)
