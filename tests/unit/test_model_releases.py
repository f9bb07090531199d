"""Release state, pinned configs, version numbering and the gateway's per-call routing (no server)."""

import json

import pytest

from facefuse.gateway.routing import ReleaseRouter
from facefuse.models_admin import versions
from facefuse.models_admin.pinning import apply_state
from facefuse.models_admin.releases import Release, ReleaseState, first_state, load_state, save_state
from facefuse.settings import Settings
from facefuse_build.configs import Profile, repository_configs, validate


def two_releases(canary_percent: float = 0.0) -> ReleaseState:
    state = first_state({"face_detector": 1, "face_landmarks": 1, "fuse": 1})
    state.releases[2] = Release({"face_detector": 1, "face_landmarks": 1, "fuse": 2}, gate={"passed": True})
    state.candidate, state.canary_percent = 2, canary_percent
    return state


def test_kept_releases_load_their_versions_and_only_those():
    state = two_releases()
    state.releases[3] = Release({"face_detector": 1, "face_landmarks": 1, "fuse": 3})  # neither kept nor loaded
    assert state.kept() == [1, 2]
    assert state.loaded_versions("fuse") == [1, 2]
    assert state.loaded_versions("face_detector") == [1]


def test_state_survives_a_round_trip_through_its_file(tmp_path):
    save_state(tmp_path, two_releases(10))
    loaded = load_state(tmp_path)
    assert loaded.to_json() == two_releases(10).to_json()


def test_a_state_naming_a_missing_release_is_refused():
    data = two_releases().to_json()
    data["serving"] = 7
    with pytest.raises(ValueError, match="serving release 7"):
        ReleaseState.from_json(data)


def test_configs_pin_every_ensemble_step_and_list_the_kept_versions():
    models, ensembles = apply_state(*repository_configs(Profile("gpu"), Settings()), two_releases())
    assert models["fuse"]["version_policy"] == {"specific": {"versions": [1, 2]}}
    for name, release_fuse in (("face_fusion", 1), ("face_fusion_r1", 1), ("face_fusion_r2", 2)):
        steps = {s["model_name"]: s["model_version"] for s in ensembles[name]["ensemble_scheduling"]["step"]}
        assert steps["fuse"] == release_fuse and steps["face_detector"] == 1 and steps["decode"] == -1
        validate(ensembles[name])
    assert {"face_analyze_r2", "face_fuse_r2"} <= set(ensembles)


def test_the_cpu_profiles_steps_load_and_pin_their_networks_versions():
    models, ensembles = apply_state(*repository_configs(Profile("cpu"), Settings()), two_releases())
    assert models["fuse_faces"]["version_policy"] == models["fuse"]["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert models["detect_faces"]["version_policy"] == {"specific": {"versions": [1]}}
    for name, release_fuse in (("face_fusion", 1), ("face_fusion_r1", 1), ("face_fusion_r2", 2)):
        steps = {s["model_name"]: s["model_version"] for s in ensembles[name]["ensemble_scheduling"]["step"]}
        assert list(steps) == ["detect_faces", "mesh_faces", "template_bank", "fuse_faces"]
        assert (steps["detect_faces"], steps["mesh_faces"], steps["fuse_faces"]) == (1, 1, release_fuse)
        validate(ensembles[name])


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_posters_are_verified_with_the_serving_releases_landmarks_not_a_candidates(profile):
    state = first_state({"face_detector": 1, "face_landmarks": 3, "fuse": 1})
    state.releases[2] = Release({"face_detector": 1, "face_landmarks": 4, "fuse": 1}, gate={"passed": True})
    state.candidate, state.canary_percent = 2, 100.0
    verifiers = [name for name in versions.VERIFYING_MODELS if name in repository_configs(Profile(profile), Settings())[0]]
    assert verifiers == (["postprocess", "fuse_faces"] if profile == "cpu" else ["postprocess"])

    def named(current: ReleaseState) -> set[str]:
        models, _ = apply_state(*repository_configs(Profile(profile), Settings()), current)
        for name in verifiers:
            validate(models[name])
        return {models[name]["parameters"][versions.VERIFICATION_LANDMARKS]["string_value"] for name in verifiers}

    assert named(state) == {"3"}  # the candidate's version 4 is loaded, and takes canary calls, but does not judge
    state.serving, state.previous, state.candidate = 2, 1, None
    assert named(state) == {"4"}


def test_a_step_has_exactly_its_networks_versions_and_none_on_the_gpu_profile(tmp_path):
    for number in (2, 3):
        (tmp_path / "fuse" / str(number)).mkdir(parents=True)
        (tmp_path / "fuse" / str(number) / "model.onnx").write_bytes(b"x")
    (tmp_path / "fuse_faces" / "1").mkdir(parents=True)  # its network version is gone
    versions.sync_steps(tmp_path, enabled=True)
    assert sorted(p.name for p in (tmp_path / "fuse_faces").iterdir()) == ["2", "3"]
    adapter = (tmp_path / "fuse_faces" / "3" / "model.py").read_text()
    assert "from facefuse.server.steps import FuseFaces as TritonPythonModel" in adapter
    assert sorted(p.name for p in (tmp_path / "detect_faces").iterdir()) == []  # no detector built
    versions.sync_steps(tmp_path, enabled=False)
    assert not (tmp_path / "fuse_faces").exists() and (tmp_path / "fuse" / "3" / "model.onnx").is_file()


def test_without_a_state_configs_are_left_as_generated():
    models, ensembles = repository_configs(Profile("cpu"), Settings())
    assert apply_state(models, ensembles, None) == (models, ensembles)


def test_version_numbers_are_never_reused_after_a_version_is_removed(tmp_path):
    for number in (1, 2, 3):
        (tmp_path / "fuse" / str(number)).mkdir(parents=True)
        (tmp_path / "fuse" / str(number) / "model.onnx").write_bytes(b"x")
    assert versions.prune(tmp_path, "fuse", keep={1}) == []  # 1 is kept, 2 and 3 are the newest
    assert versions.prune(tmp_path, "fuse", keep=set(), keep_newest=1) == [1, 2]
    assert versions.versions(tmp_path, "fuse") == [3]
    import shutil
    shutil.rmtree(tmp_path / "fuse" / "3")
    versions.note_removed(tmp_path, "fuse", 3)
    assert versions.next_version(tmp_path, "fuse") == 4


def test_the_router_sends_the_canary_share_to_the_candidate(tmp_path):
    save_state(tmp_path, two_releases(canary_percent=25))
    draws = iter([0.10, 0.24, 0.25, 0.90])
    router = ReleaseRouter(tmp_path / ".releases.json", draw=lambda: next(draws))
    assert [router.choose() for _ in range(4)] == [2, 2, 1, 1]
    assert router.model("face_fusion", 2) == "face_fusion_r2"


def test_the_router_follows_a_changed_state_and_keeps_the_last_good_one(tmp_path):
    clock = [0.0]
    router = ReleaseRouter(tmp_path / ".releases.json", reread_s=0.5, draw=lambda: 0.0, clock=lambda: clock[0])
    assert router.choose() is None  # nothing published: the plain ensembles
    save_state(tmp_path, two_releases(canary_percent=0))
    clock[0] += 1
    assert router.choose() == 1
    state = two_releases()
    state.serving, state.previous, state.candidate = 2, 1, None
    save_state(tmp_path, state)
    clock[0] += 0.1
    assert router.choose() == 1  # not re-read within reread_s
    clock[0] += 1
    assert router.choose() == 2
    (tmp_path / ".releases.json").write_text("{not json")
    clock[0] += 1
    assert router.choose() == 2
    assert json.loads(json.dumps(state.to_json()))["serving"] == 2


def test_metrics_are_told_apart_per_version_and_per_release_ensemble():
    from facefuse.models_admin.commands import release_metrics

    text = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="fuse",version="1"} 90
nv_inference_request_success{model="fuse",version="2"} 10
nv_inference_request_success{model="face_fusion_r2",version="1"} 10
nv_inference_request_success{model="decode",version="1"} 100
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="fuse",reason="BACKEND",version="2"} 3
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="fuse",version="2"} 400000
"""
    figures = release_metrics(text)
    assert figures[("fuse", "2")] == {"ok": 10.0, "failed": 3.0, "mean_ms": 40.0}
    assert figures[("fuse", "1")]["ok"] == 90.0 and ("face_fusion_r2", "1") in figures
    assert ("decode", "1") not in figures
