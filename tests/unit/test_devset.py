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


def test_an_unknown_transform_is_refused_by_name():
    spec = devset.CaseSpec("x", "frontal", devset.ASTRONAUT, ("sharpen:3",))
    with pytest.raises(ValueError, match="sharpen"):
        devset._apply(spec, np.zeros((8, 8, 3), np.uint8), faces=None)
