from pathlib import Path

import pytest

from facefuse.contract import MAX_FACES
from facefuse.settings import Settings
from facefuse_build import configs, tensorrt
from facefuse_build.configs import Profile


def network_specs():
    specs = configs.model_specs(Profile("gpu"), Settings())
    return [s for s in specs if s.network]


@pytest.mark.parametrize("spec", network_specs(), ids=lambda s: s.name)
def test_profiles_cover_batch_one_to_max_batch_size_for_every_input(spec):
    for tensor in spec.inputs:
        r = tensorrt.shape_range(tensor, spec.max_batch_size)
        assert r.min[0] == 1 and r.max[0] == spec.max_batch_size
        assert r.min[0] <= r.opt[0] <= r.max[0]
        assert len(r.min) == len(r.opt) == len(r.max) == len(tensor.dims) + 1


def test_faces_dimension_spans_one_to_max_faces_and_other_dims_are_static():
    spec = next(s for s in network_specs() if s.name == "fuse")
    faces = next(t for t in spec.inputs if t.name == "user_faces")
    r = tensorrt.shape_range(faces, spec.max_batch_size)
    assert (r.min[1], r.opt[1], r.max[1]) == (1, 1, MAX_FACES)
    assert r.min[2:] == r.max[2:] == (384, 384, 3)


def test_a_second_dynamic_dimension_is_refused():
    from facefuse.contract import TensorSpec

    with pytest.raises(ValueError, match="dynamic dimension"):
        tensorrt.shape_range(TensorSpec("image", "UINT8", (-1, -1, 3)), 8)


def test_polygraphy_profile_and_builder_config_are_built_without_tensorrt(tmp_path: Path):
    spec = next(s for s in network_specs() if s.name == "face_detector")
    profile = tensorrt.optimization_profile(spec.inputs, spec.max_batch_size)
    shapes = profile["detector_image"]
    assert tuple(shapes.min) == (1, 640, 640, 3) and tuple(shapes.max) == (8, 640, 640, 3)
    config = tensorrt.builder_config(spec.inputs, spec.max_batch_size, fp16=True, timing_cache=tmp_path / "cache")
    assert config.fp16 is True and len(config.profiles) == 1
    assert config.timing_cache_path is None  # no cache yet: the first build creates it
    (tmp_path / "cache").write_bytes(b"x")
    assert tensorrt.builder_config(spec.inputs, 8, False, tmp_path / "cache").timing_cache_path == str(tmp_path / "cache")


@pytest.mark.gpu
@pytest.mark.skipif(not tensorrt.tensorrt_available(), reason="TensorRT is not installed")
def test_gpu_build_produces_checked_engines(tmp_path):  # pragma: no cover - needs a GPU build node
    from facefuse_build.pipeline import build_repository

    settings = Settings(model_repository_dir=tmp_path / "models", ensembles_dir=tmp_path / "ensembles")
    report = build_repository(Profile("gpu"), settings, log=lambda *_: None)
    for name in ("face_detector", "face_landmarks", "fuse"):
        assert (tmp_path / "models" / name / "1" / "model.plan").is_file()
    assert any("TensorRT engine" in note for note in report.notes)
