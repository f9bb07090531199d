import copy

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from facefuse.settings import Settings
from facefuse_build import configs
from facefuse_build.configs import Profile
from facefuse_build.errors import ProfileError

SETTINGS = Settings()


@pytest.fixture(params=["cpu", "gpu"])
def profile(request):
    return Profile(request.param, (0, 1) if request.param == "gpu" else (0,))


def test_every_config_parses_as_triton_model_config_text(profile):
    models, ensembles = configs.repository_configs(profile, SETTINGS)
    for config in (*models.values(), *ensembles.values()):
        parsed = text_format.Parse(configs.pbtxt(config), model_config_pb2.ModelConfig())
        assert parsed.name == config["name"]


def test_every_model_batches_dynamically_with_a_stated_queue_delay(profile):
    models, _ = configs.repository_configs(profile, SETTINGS)
    for config in models.values():
        parsed = configs.validate(config)
        assert parsed.max_batch_size > 0
        assert parsed.HasField("dynamic_batching"), config["name"]
        assert "max_queue_delay_microseconds" in config["dynamic_batching"]


def test_fuse_forms_batches_on_gpu_and_runs_one_poster_at_a_time_on_cpu():
    gpu, _ = configs.repository_configs(Profile("gpu"), SETTINGS)
    assert gpu["fuse"]["dynamic_batching"]["max_queue_delay_microseconds"] > 0
    assert "preferred_batch_size" not in gpu["fuse"]["dynamic_batching"]
    cpu, _ = configs.repository_configs(Profile("cpu"), SETTINGS)
    assert cpu["fuse"]["dynamic_batching"]["preferred_batch_size"] == [1]


def test_cpu_profile_runs_everything_on_cpu_instances():
    models, _ = configs.repository_configs(Profile("cpu"), SETTINGS)
    for config in models.values():
        assert config["backend"] == "python"
        assert {g["kind"] for g in config["instance_group"]} == {"KIND_CPU"}


def test_gpu_profile_spreads_network_instances_over_the_listed_gpus():
    models, _ = configs.repository_configs(Profile("gpu", (0, 2)), SETTINGS, planned=frozenset({"fuse"}))
    for name in ("face_detector", "face_landmarks", "fuse"):
        groups = models[name]["instance_group"]
        assert [g["gpus"] for g in groups] == [[0], [2]] and {g["kind"] for g in groups} == {"KIND_GPU"}
    assert models["fuse"]["platform"] == "tensorrt_plan"
    assert models["face_detector"]["platform"] == "onnxruntime_onnx"
    assert models["decode"]["instance_group"][0]["kind"] == "KIND_CPU"


def test_detector_tensors_follow_the_profile_input_size():
    cpu, _ = configs.repository_configs(Profile("cpu"), SETTINGS)
    gpu, _ = configs.repository_configs(Profile("gpu"), SETTINGS)
    assert cpu["face_detector"]["input"][0]["dims"] == [320, 320, 3]
    assert gpu["face_detector"]["input"][0]["dims"] == [640, 640, 3]
    assert gpu["face_detector"]["output"][1]["dims"] == [16800]


def test_every_ensemble_step_maps_onto_its_model_inputs_and_outputs(profile):
    models, ensembles = configs.repository_configs(profile, SETTINGS)
    assert configs.check_ensembles(ensembles, models) == []
    # Every step's maps name real tensors of the target model with the same dtype and dims.
    for ensemble in ensembles.values():
        for step in ensemble["ensemble_scheduling"]["step"]:
            model = models[step["model_name"]]
            assert set(step["input_map"]) == {t["name"] for t in model["input"]}
            assert set(step["output_map"]) <= {t["name"] for t in model["output"]}


def test_a_miswired_ensemble_is_caught():
    models, ensembles = configs.repository_configs(Profile("gpu"), SETTINGS)
    broken = copy.deepcopy(ensembles)
    fuse_step = next(s for s in broken["face_fusion"]["ensemble_scheduling"]["step"] if s["model_name"] == "fuse")
    fuse_step["input_map"]["user_faces"] = "image"  # UINT8 [-1,-1,3] into [-1,384,384,3]
    problems = configs.check_ensembles(broken, models)
    assert any("'image'" in p and "user_faces" in p for p in problems)


def test_an_unused_ensemble_tensor_is_caught():
    models, ensembles = configs.repository_configs(Profile("gpu"), SETTINGS)
    broken = copy.deepcopy(ensembles)
    landmarks = next(s for s in broken["face_analyze"]["ensemble_scheduling"]["step"] if s["model_name"] == "face_landmarks")
    landmarks["output_map"]["face_presence"] = "user_presence"
    assert any("never used" in p for p in configs.check_ensembles(broken, models))


def test_unknown_profile_and_bad_gpu_list_are_refused():
    with pytest.raises(ProfileError, match="unknown profile 'tpu'"):
        Profile("tpu")
    with pytest.raises(ProfileError, match="GPU indices"):
        Profile("gpu", ())


def test_a_config_field_triton_does_not_know_is_refused():
    models, _ = configs.repository_configs(Profile("cpu"), SETTINGS)
    config = dict(models["decode"], max_batch_sise=4)
    with pytest.raises(Exception, match="max_batch_sise"):
        configs.validate(config)


def test_the_model_video_frames_go_through_queues_photos_before_frames(profile):
    from facefuse.contract import PHOTO_PRIORITY, PRIORITY_LEVELS, VIDEO_FRAME_PRIORITY

    models, _ = configs.repository_configs(profile, SETTINGS)
    fuse = configs.validate(models["fuse"]).dynamic_batching
    assert fuse.priority_levels == PRIORITY_LEVELS >= VIDEO_FRAME_PRIORITY > PHOTO_PRIORITY
    # A photo request carries no priority (0) and gets the default level: the high one.
    assert fuse.default_priority_level == PHOTO_PRIORITY
    # Models frames do not go through keep one queue.
    assert configs.validate(models["decode"]).dynamic_batching.priority_levels == 0


def test_both_profiles_chain_the_same_ensembles_the_cpu_one_through_its_in_process_steps():
    cpu_models, cpu = configs.repository_configs(Profile("cpu"), SETTINGS)
    gpu_models, gpu = configs.repository_configs(Profile("gpu"), SETTINGS)
    steps = lambda config: [s["model_name"] for s in config["ensemble_scheduling"]["step"]]  # noqa: E731
    assert steps(cpu["face_fusion"]) == ["detect_faces", "mesh_faces", "template_bank", "fuse_faces"]
    assert steps(gpu["face_fusion"]) == ["decode", "face_detector", "align", "face_landmarks", "face_quality",
                                         "template_bank", "fuse", "beautify", "postprocess"]
    for name in ("face_analyze", "face_fuse", "face_fusion", "face_beautify"):  # same interface on both
        assert cpu[name]["input"] == gpu[name]["input"] and cpu[name]["output"] == gpu[name]["output"], name
    assert {"detect_faces", "mesh_faces", "fuse_faces"} <= set(cpu_models)
    assert not {"detect_faces", "mesh_faces", "fuse_faces"} & set(gpu_models)
