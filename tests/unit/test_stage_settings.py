"""A setting changed after the model repository was built is caught before Triton starts."""

import pytest

from facefuse.server.stage_settings import stale_stage_parameters
from facefuse.settings import get_settings
from facefuse_build.configs import Profile, pbtxt, repository_configs


def repository(tmp_path, one_eye: str, without: str | None = None):
    """face_quality's config as `facefuse models build` wrote it with max_one_eye_covered
    at `one_eye` (and, to stand for an older build, without the parameter `without`)."""
    settings = get_settings().model_copy(update={"max_one_eye_covered": float(one_eye)})
    config = repository_configs(Profile("cpu"), settings)[0]["face_quality"]
    config["parameters"]["template_dir"] = {"string_value": "/somewhere/else"}
    config["parameters"].pop(without, None)
    (tmp_path / "face_quality").mkdir()
    (tmp_path / "face_quality" / "config.pbtxt").write_text(pbtxt(config))
    return tmp_path


def test_a_repository_built_with_the_settings_in_force_is_current(tmp_path):
    # template_dir differs, but the stages read it from the environment when they start
    settings = get_settings().model_copy(update={"max_one_eye_covered": 0.8, "template_dir": tmp_path / "templates"})
    assert stale_stage_parameters(settings, [repository(tmp_path, "0.8")]) == []


def test_a_gate_changed_since_the_build_is_named_with_both_values(tmp_path):
    settings = get_settings().model_copy(update={"max_one_eye_covered": 0.6, "template_dir": None})
    stale = stale_stage_parameters(settings, [repository(tmp_path, "0.8")])
    assert stale == ["face_quality: max_one_eye_covered is 0.8 in its config, the setting says 0.6"]


def test_a_parameter_added_since_the_build_is_named(tmp_path):
    # an upgraded checkout: the stage would fail to load without it
    settings = get_settings().model_copy(update={"max_one_eye_covered": 0.8, "template_dir": None})
    stale = stale_stage_parameters(settings, [repository(tmp_path, "0.8", without="max_turn_deg")])
    assert stale == ["face_quality: its config lacks max_turn_deg"]


def test_triton_is_not_started_on_a_stale_repository(tmp_path):
    from facefuse.server.triton import Endpoints, TritonStartError, start_triton

    settings = get_settings().model_copy(update={
        "max_one_eye_covered": 0.6, "template_dir": None,
        "model_repository_dir": repository(tmp_path, "0.8"), "ensembles_dir": tmp_path / "ensembles",
        "var_dir": tmp_path / "var",
    })
    with pytest.raises(TritonStartError, match="facefuse models build.*max_one_eye_covered is 0.8"):
        start_triton(settings, Endpoints.from_settings(settings, (1, 2, 3)))
    assert not (tmp_path / "var").exists()  # refused before anything was prepared or launched
