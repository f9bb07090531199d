import numpy as np
import pytest

from facefuse.eval import devset


def test_devset_has_at_least_120_cases_with_unique_names_and_every_kind():
    names = [spec.name for spec in devset.SPECS]
    assert len(names) >= 120
    assert len(set(names)) == len(names)
    assert {spec.kind for spec in devset.SPECS} == set(devset.KINDS)


def test_every_case_names_its_package_version_and_path():
    for spec in devset.SPECS:
        assert spec.origin.package and spec.origin.version and spec.origin.path, spec.name


def test_an_unknown_transform_is_refused_by_name():
    spec = devset.CaseSpec("x", "frontal", devset.ASTRONAUT, ("sharpen:3",))
    with pytest.raises(ValueError, match="sharpen"):
        devset._apply(spec, np.zeros((8, 8, 3), np.uint8), faces=None)


def test_every_case_records_a_licence():
    for spec in devset.SPECS:
        assert devset.licence(spec.origin.package), spec.name


def test_case_names_start_with_their_kind():
    for spec in devset.SPECS:
        prefix = spec.name.split("-", 1)[0]
        # a looking-up face is filed with the looking-down ones (both are pitch)
        assert prefix == spec.kind or (spec.kind, prefix) == ("looking_down", "looking_up"), spec.name


def _face_mesh(size=200):
    """A synthetic mesh: every point at the face's centre, the eye corners and lips placed."""
    mesh = np.zeros((468, 3))
    mesh[:, :2] = size / 2
    mesh[33, :2], mesh[263, :2] = (60, 90), (140, 90)
    mesh[13, :2], mesh[14, :2] = (100, 140), (100, 156)
    return mesh


def test_mouth_opening_is_the_inner_lips_gap_in_eye_distances():
    assert devset.mouth_opening(_face_mesh()) == pytest.approx(16 / 80)


def test_shine_only_brightens_and_stays_near_the_face():
    rgb = np.full((200, 200, 3), 90, np.uint8)
    mesh = _face_mesh()
    out = devset._shine(rgb, mesh, 0.8, np.random.default_rng(0))
    diff = out.astype(int) - rgb.astype(int)
    assert diff.max() > 60  # a near-white core
    assert np.abs(diff[:20]).max() <= 3 and np.abs(diff[-20:]).max() <= 3  # noise only, far from the face
