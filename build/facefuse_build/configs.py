"""Every Triton config.pbtxt, generated from one typed source per profile.

`MODELS` and `ENSEMBLES` below are the source. `model_configs(profile)` turns them into
dicts, each validated against Triton's own `ModelConfig` protobuf schema
(`json_format.ParseDict`), and `check_ensembles` verifies every ensemble step's
input_map/output_map against the target model (names, dtypes, shapes). Nothing is
hand-written or edited after generation.

A profile's measured tuning (`tuned/<profile>.json`, written by `facefuse bench sweep`
with the table it was chosen from) overrides the instance counts, preferred batch sizes
and queue delays below; `Tuning` reads and checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from facefuse import contract as c
from facefuse.contract import TensorSpec
from facefuse.settings import Settings
from facefuse_build.errors import BuildError, ProfileError

PROFILES = ("cpu", "gpu")
# Python stages loop over requests anyway; a short delay lets requests queued under load
# share one execute() call (one round trip to the stub). On the 2-core machine 200 us
# gave about 24 posters/s at concurrency 8, 1-5 ms about 25; each Python stage adds up
# to this delay to an idle server's latency. The cpu profile's measured value is in
# tuned/cpu.json (`facefuse bench sweep`).
PYTHON_STAGE_QUEUE_DELAY_US = 1000
TUNED_DIR = Path(__file__).resolve().with_name("tuned")


@dataclass(frozen=True)
class Profile:
    name: str
    gpus: tuple[int, ...] = (0,)

    def __post_init__(self):
        if self.name not in PROFILES:
            raise ProfileError(f"unknown profile {self.name!r}; use one of {', '.join(PROFILES)}")
        if self.name == "gpu" and (not self.gpus or any(g < 0 for g in self.gpus)):
            raise ProfileError(f"gpu profile needs a list of GPU indices (e.g. --gpus 0,1), got {self.gpus}")

    @property
    def detector_input_px(self) -> int:
        return c.DETECTOR_INPUT_PX[self.name]

    @property
    def in_process_steps(self) -> bool:
        """The cpu profile runs the design's steps with their networks in-process
        (facefuse.server.steps); the gpu profile serves every network on its own."""
        return self.name == "cpu"


@dataclass(frozen=True)
class ModelSpec:
    """One Triton model: a Python stage or a built network."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    network: bool  # built from weights (ONNX/TensorRT) rather than a Python stage
    max_batch_size: int
    max_queue_delay_us: int
    # A Python stage that runs networks in-process (the cpu profile's steps).
    runs_networks: bool = False
    instances_cpu: int = 1
    instances_per_gpu: int = 1
    # ONNX Runtime threads per instance of a network (or a step running one) on the cpu profile.
    intra_op_threads: int = 1
    # cpu profile: batch sizes the batcher should form when it can (None: as large as possible).
    cpu_preferred_batch_sizes: tuple[int, ...] | None = None
    # Inputs whose shape varies per request (images): let the Python backend receive
    # such requests together instead of one execute() call each.
    ragged_inputs: tuple[str, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)
    # Video frames are sent to this model directly: its queue orders photo requests
    # (the default level) before frames (facefuse.contract's priority levels).
    takes_video_frames: bool = False


# What a tuning may set per model (ModelSpec fields).
TUNABLE_FIELDS = ("instances_cpu", "cpu_preferred_batch_sizes", "max_queue_delay_us")


@dataclass(frozen=True)
class Tuning:
    """Measured overrides of the specs' serving settings for one profile.

    python_stage_queue_delay_us: the queue delay of every Python stage (None: the
    PYTHON_STAGE_QUEUE_DELAY_US default); models: model -> {TUNABLE_FIELDS: value}, where
    a preferred batch size list of None means "as large as possible".
    """

    python_stage_queue_delay_us: int | None = None
    models: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str = "tuning") -> "Tuning":
        delay = data.get("python_stage_queue_delay_us")
        if delay is not None and (not isinstance(delay, int) or delay < 0):
            raise BuildError(f"{where}: python_stage_queue_delay_us must be a whole number of microseconds >= 0, got {delay!r}")
        models: dict[str, dict] = {}
        for model, fields in (data.get("models") or {}).items():
            unknown = set(fields) - set(TUNABLE_FIELDS)
            if unknown:
                raise BuildError(f"{where}: {model} sets {sorted(unknown)}; a tuning may set only {', '.join(TUNABLE_FIELDS)}")
            checked = dict(fields)
            for name in ("instances_cpu", "max_queue_delay_us"):
                value = checked.get(name)
                if name in checked and (not isinstance(value, int) or value < (1 if name == "instances_cpu" else 0)):
                    raise BuildError(f"{where}: {model}.{name} = {value!r} is not a valid count")
            if "cpu_preferred_batch_sizes" in checked and checked["cpu_preferred_batch_sizes"] is not None:
                sizes = checked["cpu_preferred_batch_sizes"]
                if not sizes or any(not isinstance(n, int) or n < 1 for n in sizes):
                    raise BuildError(f"{where}: {model}.cpu_preferred_batch_sizes = {sizes!r}: use a list of batch sizes >= 1 or null")
                checked["cpu_preferred_batch_sizes"] = tuple(sizes)
            models[model] = checked
        return cls(delay, models)

    def to_dict(self) -> dict:
        models = {m: {k: list(v) if isinstance(v, tuple) else v for k, v in f.items()} for m, f in sorted(self.models.items())}
        return {"python_stage_queue_delay_us": self.python_stage_queue_delay_us, "models": models}

    def merged(self, other: "Tuning") -> "Tuning":
        """This tuning with other's settings on top."""
        models = {m: dict(f) for m, f in self.models.items()}
        for model, fields in other.models.items():
            models.setdefault(model, {}).update(fields)
        delay = other.python_stage_queue_delay_us
        return Tuning(self.python_stage_queue_delay_us if delay is None else delay, models)

    def apply(self, specs: list["ModelSpec"]) -> list["ModelSpec"]:
        names = {s.name for s in specs}
        unknown = set(self.models) - names
        if unknown:
            raise BuildError(f"tuning names models {sorted(unknown)} that the profile does not have ({', '.join(sorted(names))})")
        return [replace(s, **self.models.get(s.name, {})) for s in specs]


def tuned(profile_name: str, directory: Path = TUNED_DIR) -> Tuning:
    """The committed tuning of a profile; none (the specs as written) when it has no file."""
    path = directory / f"{profile_name}.json"
    if not path.is_file():
        return Tuning()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path} is not valid JSON ({exc}); rewrite it with `facefuse bench sweep --write`") from None
    return Tuning.from_dict(data, str(path))


def _detector_tensors(profile: Profile) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    s = profile.detector_input_px
    priors = c.detector_prior_count(s)
    inputs = (TensorSpec("detector_image", "UINT8", (s, s, 3)),)
    outputs = (
        TensorSpec("box_deltas", "FP32", (priors, 4)),
        TensorSpec("face_probs", "FP32", (priors,)),
        TensorSpec("keypoint_deltas", "FP32", (priors, 10)),
    )
    return inputs, outputs


LETTERBOX_SCALE = TensorSpec("letterbox_scale", "FP32", (1,))
FACE_PRESENCE = TensorSpec("face_presence", "FP32", (-1,))
# The template version template_bank resolved: postprocess pastes into that version's
# image, which it holds itself, so the poster-sized image never travels the ensemble.
TEMPLATE_VERSION = TensorSpec("template_version", "INT64", (1,))
FUSED_FACES = TensorSpec("fused_faces", "UINT8", c.WORKING_FACES.dims)
FUSED_MASKS = TensorSpec("fused_masks", "UINT8", (-1, -1, -1))
CHECKED_MESHES = TensorSpec("checked_meshes", "FP32", (-1, c.MESH_POINTS, 3))


def _renamed(spec: TensorSpec, name: str) -> TensorSpec:
    return TensorSpec(name, spec.dtype, spec.dims)


USER_FACES = _renamed(c.FACES, "user_faces")
USER_MESHES = _renamed(c.FACE_MESHES, "user_meshes")
TEMPLATE_FACES = _renamed(c.WORKING_FACES, "template_faces")
TEMPLATE_MESHES = _renamed(c.FACE_MESHES, "template_meshes")


def model_specs(profile: Profile, settings: Settings, tuning: Tuning | None = None) -> list[ModelSpec]:
    """The profile's models; tuning None: the profile's committed tuning (`tuned`)."""
    tuning = tuned(profile.name) if tuning is None else tuning
    python_delay_us = PYTHON_STAGE_QUEUE_DELAY_US if tuning.python_stage_queue_delay_us is None \
        else tuning.python_stage_queue_delay_us
    return tuning.apply(_model_specs(profile, settings, python_delay_us))


def _model_specs(profile: Profile, settings: Settings, python_delay_us: int) -> list[ModelSpec]:
    detector_in, detector_out = _detector_tensors(profile)
    s = settings
    # AlignParams.from_parameters reads these (align, beauty_faces and detect_faces cut faces alike).
    face_gates = {
        "detector_input_px": str(profile.detector_input_px),
        "score_threshold": str(s.detector_score_threshold),
        "nms_iou": str(s.detector_nms_iou),
        "min_face_px": str(s.min_face_px),
        "max_face_outside_fraction": str(s.max_face_outside_fraction),
        "second_pass_tiles": str(s.detector_second_pass_tiles),
    }
    decode_limits = {
        "detector_input_px": str(profile.detector_input_px),
        "max_image_side_px": str(s.max_image_side_px),
        "decode_target_side_px": str(s.decode_target_side_px),
        "max_image_bytes": str(s.max_image_bytes),
    }
    quality_limits = {  # QualityLimits.from_parameters reads these
        "max_turn_deg": str(s.max_turn_deg),
        "max_eyes_covered": str(s.max_eyes_covered),
        "max_one_eye_covered": str(s.max_one_eye_covered),
        "max_mouth_covered": str(s.max_mouth_covered),
        "max_face_strands": str(s.max_face_strands),
        "min_face_brightness": str(s.min_face_brightness),
        "min_face_sharpness": str(s.min_face_sharpness),
    }
    stages = [
        ModelSpec(
            "decode", (c.IMAGE_BYTES,), (c.IMAGE, detector_in[0], LETTERBOX_SCALE), network=False,
            max_batch_size=16, max_queue_delay_us=python_delay_us, parameters=decode_limits,
        ),
        ModelSpec(
            "face_detector", detector_in, detector_out, network=True,
            max_batch_size=c.DETECTOR_MAX_BATCH, max_queue_delay_us=1000, instances_cpu=1, instances_per_gpu=1,
        ),
        ModelSpec(
            "align", (c.IMAGE, *detector_out, LETTERBOX_SCALE), (c.FACES, c.FACE_AFFINES, c.FACE_BOXES),
            network=False, max_batch_size=16, max_queue_delay_us=python_delay_us, ragged_inputs=("image",),
            parameters=face_gates,
        ),
        ModelSpec(
            "face_landmarks", (c.FACES,), (c.FACE_MESHES, FACE_PRESENCE), network=True,
            max_batch_size=16, max_queue_delay_us=1000,
        ),
        ModelSpec(
            # The mesh passes through, so `fuse` only runs once the face is accepted.
            "face_quality", (c.FACES, c.FACE_MESHES, c.FACE_AFFINES), (CHECKED_MESHES, c.FACE_QUALITY, c.FACE_WARNINGS),
            network=False, max_batch_size=16, max_queue_delay_us=python_delay_us,
            parameters=quality_limits,
        ),
        ModelSpec(
            # user_meshes is not read: it orders template_bank after the user side (see
            # TEMPLATE_SIDE), and the batch may mix requests with different face counts.
            "template_bank", (c.TEMPLATE_ID, c.FACE_INDICES, _renamed(c.FACE_MESHES, "user_meshes")),
            (TEMPLATE_VERSION, TEMPLATE_FACES, TEMPLATE_MESHES,
             _renamed(c.FACE_AFFINES, "template_affines")),
            network=False, max_batch_size=16, max_queue_delay_us=python_delay_us,
            ragged_inputs=("face_indices", "user_meshes"),
            parameters={"template_dir": str(s.templates_path)},
        ),
        ModelSpec(
            "fuse",
            (USER_FACES, USER_MESHES, TEMPLATE_FACES, TEMPLATE_MESHES, c.FUSE_DEGREE, c.PROFILE_DEGREE),
            (FUSED_FACES, FUSED_MASKS), network=True,
            max_batch_size=8, max_queue_delay_us=1000, instances_cpu=2, instances_per_gpu=1,
            # On CPU a batch costs more per face than one face at a time (measured 35 ms
            # at batch 1, 43 ms/face at batch 4: the working set outgrows the caches),
            # so on the cpu profile, where this model serves video frames (posters go
            # through fuse_faces, tuned in tuned/cpu.json), it runs one request per
            # execution on its own instances: with a preferred batch size of 1 the
            # batcher sends each at once. On GPU the 1 ms delay lets batches form.
            cpu_preferred_batch_sizes=(1,),
            takes_video_frames=True,
        ),
        ModelSpec(
            # After fuse (the poster's faces) or beauty_faces (a photo's): on CPU faces
            # without beauty pass through (facefuse.stages.beautify).
            "beautify",
            (_renamed(c.WORKING_FACES, "faces"), c.FACE_MASKS, c.FACE_MESHES, _renamed(c.FACE_MESHES, "user_meshes"),
             c.PROFILE_DEGREE, c.BEAUTY),
            (_renamed(c.WORKING_FACES, "beautified_faces"), _renamed(c.FACE_MASKS, "beautified_masks")), network=True,
            max_batch_size=8, max_queue_delay_us=1000, instances_cpu=1, instances_per_gpu=1,
        ),
        ModelSpec(
            "beauty_faces", (c.IMAGE, *detector_out, LETTERBOX_SCALE, c.FACE_INDEX),
            (c.FACES, c.FACE_AFFINES, c.FACE_MASKS, c.PROFILE_DEGREE),
            network=False, max_batch_size=16, max_queue_delay_us=python_delay_us, ragged_inputs=("image",),
            parameters=face_gates,
        ),
        ModelSpec(
            "beauty_paste",
            (c.IMAGE, _renamed(c.WORKING_FACES, "beautified_faces"), _renamed(c.FACE_MASKS, "beautified_masks"),
             c.FACE_AFFINES, c.ADD_LABEL, c.OUTPUT_FORMAT, c.OUTPUT_QUALITY),
            (c.PHOTO,), network=False, max_batch_size=16, max_queue_delay_us=python_delay_us,
            ragged_inputs=("image", "beautified_faces", "beautified_masks", "face_affines"),
        ),
        ModelSpec(
            "postprocess",
            (c.TEMPLATE_ID, TEMPLATE_VERSION, FUSED_FACES, FUSED_MASKS, _renamed(c.FACE_AFFINES, "template_affines"),
             c.ADD_LABEL, c.OUTPUT_FORMAT, c.OUTPUT_QUALITY, c.BEAUTY,
             # what the verification compares the fused faces with (facefuse.stages.verify)
             TEMPLATE_FACES, TEMPLATE_MESHES, USER_FACES, USER_MESHES, c.PROFILE_DEGREE),
            (c.POSTER, *POSTER_VERDICT), network=False, max_batch_size=16, max_queue_delay_us=python_delay_us,
            ragged_inputs=("fused_faces", "fused_masks", "template_affines", "template_faces", "template_meshes",
                           "user_faces", "user_meshes"),
            parameters={"template_dir": str(s.templates_path)},
        ),
    ]
    if not profile.in_process_steps:
        return stages
    # The cpu profile's steps (facefuse.server.steps): a network and the stages around it
    # in one stub. The stages above stay loaded for face_beautify and the video path.
    return stages + [
        ModelSpec(
            "detect_faces", (c.IMAGE_BYTES,), (c.FACES, c.FACE_AFFINES, c.FACE_BOXES), network=False,
            max_batch_size=16, max_queue_delay_us=python_delay_us, instances_cpu=2, runs_networks=True,
            parameters={**decode_limits, **face_gates},
        ),
        ModelSpec(
            "mesh_faces", (c.FACES, c.FACE_AFFINES), (c.FACE_MESHES, c.FACE_QUALITY, c.FACE_WARNINGS), network=False,
            max_batch_size=16, max_queue_delay_us=python_delay_us, ragged_inputs=("faces", "face_affines"),
            runs_networks=True, parameters=quality_limits,
        ),
        ModelSpec(
            # fuse -> beautify -> the poster (postprocess's work, in the same stub).
            "fuse_faces",
            (USER_FACES, USER_MESHES, TEMPLATE_FACES, TEMPLATE_MESHES, c.FUSE_DEGREE, c.PROFILE_DEGREE, c.BEAUTY,
             c.TEMPLATE_ID, TEMPLATE_VERSION, _renamed(c.FACE_AFFINES, "template_affines"), c.ADD_LABEL,
             c.OUTPUT_FORMAT, c.OUTPUT_QUALITY),
            (c.POSTER, *POSTER_VERDICT), network=False, runs_networks=True, max_batch_size=8,
            max_queue_delay_us=python_delay_us, instances_cpu=2,
            ragged_inputs=("user_faces", "user_meshes", "template_faces", "template_meshes", "template_affines"),
            parameters={"template_dir": str(s.templates_path)},
        ),
    ]



# ---- ensembles ---------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    model: str
    input_map: dict[str, str]  # model input -> ensemble tensor
    output_map: dict[str, str]  # model output -> ensemble tensor


@dataclass(frozen=True)
class EnsembleSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[Step, ...]


def _identity(*names: str) -> dict[str, str]:
    return {n: n for n in names}


USER_SIDE = (
    Step("decode", _identity("image_bytes"), _identity("image", "detector_image", "letterbox_scale")),
    Step("face_detector", _identity("detector_image"), _identity("box_deltas", "face_probs", "keypoint_deltas")),
    Step(
        "align", _identity("image", "box_deltas", "face_probs", "keypoint_deltas", "letterbox_scale"),
        {"faces": "user_faces", "face_affines": "user_affines", "face_boxes": "user_boxes"},
    ),
    Step("face_landmarks", {"faces": "user_faces"}, {"face_meshes": "unchecked_meshes", "face_presence": "user_presence"}),
    Step(
        "face_quality", {"faces": "user_faces", "face_meshes": "unchecked_meshes", "face_affines": "user_affines"},
        {"checked_meshes": "user_meshes", "face_quality": "user_quality", "face_warnings": "user_warnings"},
    ),
)
# template_bank takes user_meshes only to wait for the user side: with both branches in
# flight at once, a request failing on one branch (a photo without a face, a cancelled
# call) leaves the other's step uncounted in Triton 2.51's ensemble scheduler
# (EnsembleContext::PrepareSteps skips completed steps once the status is an error),
# so the request is never released and every stop waits for phantom in-flight calls.
# A chain has no second step in flight when one fails.
TEMPLATE_SIDE = (
    Step(
        "template_bank", _identity("template_id", "face_indices", "user_meshes"),
        _identity("template_version", "template_faces", "template_meshes", "template_affines"),
    ),
    Step(
        "fuse", _identity("user_faces", "user_meshes", "template_faces", "template_meshes", "fuse_degree", "profile_degree"),
        _identity("fused_faces", "fused_masks"),
    ),
    # The fused faces' geometry is the template's mesh moved toward the user's shape by
    # profile_degree: beautify makes it from the same tensors fuse read.
    Step(
        "beautify",
        {"faces": "fused_faces", "face_masks": "fused_masks", "face_meshes": "template_meshes",
         "user_meshes": "user_meshes", "profile_degree": "profile_degree", "beauty": "beauty"},
        {"beautified_faces": "poster_faces", "beautified_masks": "poster_masks"},
    ),
    Step(
        "postprocess",
        {**_identity("template_id", "template_version", "template_affines", "add_label", "output_format", "output_quality",
                     "beauty", "template_faces", "template_meshes", "user_faces", "user_meshes", "profile_degree"),
         "fused_faces": "poster_faces", "fused_masks": "poster_masks"},
        _identity("poster", "poster_quality", "poster_warnings"),
    ),
)
FUSE_OPTIONS = (c.FACE_INDICES, c.FUSE_DEGREE, c.PROFILE_DEGREE, c.ADD_LABEL, c.OUTPUT_FORMAT, c.OUTPUT_QUALITY, c.BEAUTY)
# Beautify: a photo's faces adjusted and put back into the photo.
BEAUTIFY_SIDE = (
    *USER_SIDE[:2],
    Step(
        "beauty_faces", _identity("image", "box_deltas", "face_probs", "keypoint_deltas", "letterbox_scale", "face_index"),
        {"faces": "photo_faces", "face_affines": "photo_affines", "face_masks": "photo_masks",
         "profile_degree": "photo_profile_degree"},
    ),
    Step("face_landmarks", {"faces": "photo_faces"}, {"face_meshes": "photo_meshes", "face_presence": "photo_presence"}),
    Step(
        "beautify",
        {"faces": "photo_faces", "face_masks": "photo_masks", "face_meshes": "photo_meshes", "user_meshes": "photo_meshes",
         "profile_degree": "photo_profile_degree", "beauty": "beauty"},
        _identity("beautified_faces", "beautified_masks"),
    ),
    Step(
        "beauty_paste",
        {**_identity("image", "beautified_faces", "beautified_masks", "add_label", "output_format", "output_quality"),
         "face_affines": "photo_affines"},
        _identity("photo"),
    ),
)
BEAUTIFY_OPTIONS = (c.FACE_INDEX, c.BEAUTY, c.ADD_LABEL, c.OUTPUT_FORMAT, c.OUTPUT_QUALITY)
USER_VERDICT = (_renamed(c.FACE_QUALITY, "user_quality"), _renamed(c.FACE_WARNINGS, "user_warnings"))
# The poster's own verdict, from the check postprocess gives it before it ships.
POSTER_VERDICT = (c.POSTER_QUALITY, c.POSTER_WARNINGS)

# The cpu profile: the same tensors between fewer hops (facefuse.server.steps).
CPU_USER_SIDE = (
    Step("detect_faces", _identity("image_bytes"),
         {"faces": "user_faces", "face_affines": "user_affines", "face_boxes": "user_boxes"}),
    Step("mesh_faces", {"faces": "user_faces", "face_affines": "user_affines"},
         {"face_meshes": "user_meshes", "face_quality": "user_quality", "face_warnings": "user_warnings"}),
)
CPU_TEMPLATE_SIDE = (
    TEMPLATE_SIDE[0],  # template_bank
    # The fused crops are pasted in the stub that made them (fuse_faces runs postprocess's code).
    Step("fuse_faces", _identity("user_faces", "user_meshes", "template_faces", "template_meshes", "fuse_degree",
                                 "profile_degree", "beauty", "template_id", "template_version", "template_affines",
                                 "add_label", "output_format", "output_quality"),
         _identity("poster", "poster_quality", "poster_warnings")),
)


def ensemble_specs(profile: Profile) -> tuple[EnsembleSpec, ...]:
    user, template = (CPU_USER_SIDE, CPU_TEMPLATE_SIDE) if profile.in_process_steps else (USER_SIDE, TEMPLATE_SIDE)
    return (
        EnsembleSpec(
            "face_analyze", (c.IMAGE_BYTES,),
            (USER_FACES, USER_MESHES, _renamed(c.FACE_BOXES, "user_boxes"), *USER_VERDICT), user,
        ),
        EnsembleSpec("face_fuse", (USER_FACES, USER_MESHES, c.TEMPLATE_ID, *FUSE_OPTIONS), (c.POSTER, *POSTER_VERDICT),
                     template),
        EnsembleSpec(
            "face_fusion", (c.IMAGE_BYTES, c.TEMPLATE_ID, *FUSE_OPTIONS), (c.POSTER, *POSTER_VERDICT, *USER_VERDICT),
            user + template,
        ),
        EnsembleSpec("face_beautify", (c.IMAGE_BYTES, *BEAUTIFY_OPTIONS), (c.PHOTO,), BEAUTIFY_SIDE),
    )
ENSEMBLE_MAX_BATCH_SIZE = 8


# ---- dict generation -------------------------------------------------------------
def _tensor(spec: TensorSpec, ragged: bool = False) -> dict:
    entry = {"name": spec.name, "data_type": f"TYPE_{spec.dtype}", "dims": list(spec.dims)}
    if ragged:
        entry["allow_ragged_batch"] = True
    return entry


def model_config(spec: ModelSpec, profile: Profile, has_plan: bool = False) -> dict:
    config: dict = {
        "name": spec.name,
        "max_batch_size": spec.max_batch_size,
        "input": [_tensor(t, t.name in spec.ragged_inputs) for t in spec.inputs],
        "output": [_tensor(t) for t in spec.outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": spec.max_queue_delay_us,
            # The gateway sends each request's remaining deadline as its timeout: one
            # that expires while queued is rejected, not computed for nobody.
            "default_queue_policy": {"timeout_action": "REJECT", "allow_timeout_override": True},
        },
    }
    if spec.takes_video_frames:
        config["dynamic_batching"]["priority_levels"] = c.PRIORITY_LEVELS
        config["dynamic_batching"]["default_priority_level"] = c.PHOTO_PRIORITY
    if profile.name == "cpu" and spec.cpu_preferred_batch_sizes:
        config["dynamic_batching"]["preferred_batch_size"] = list(spec.cpu_preferred_batch_sizes)
    if spec.network and profile.name == "gpu":
        # Native backends of the NGC Triton image; TensorRT plans where built.
        config["platform"] = "tensorrt_plan" if has_plan else "onnxruntime_onnx"
        config["instance_group"] = [
            {"kind": "KIND_GPU", "count": spec.instances_per_gpu, "gpus": [gpu]} for gpu in profile.gpus
        ]
    else:
        # Python backend: stages, and on CPU the networks through facefuse's ONNX Runtime runner.
        config["backend"] = "python"
        config["instance_group"] = [{"kind": "KIND_CPU", "count": spec.instances_cpu}]
        parameters = dict(spec.parameters)
        if spec.network or spec.runs_networks:
            parameters["intra_op_threads"] = str(spec.intra_op_threads)
        if parameters:
            config["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
    return config


def _consumed(spec: EnsembleSpec) -> set[str]:
    return {t for step in spec.steps for t in step.input_map.values()} | {t.name for t in spec.outputs}


def ensemble_config(spec: EnsembleSpec) -> dict:
    """Steps map every output they may produce; Triton refuses ensemble tensors nobody
    consumes, so outputs this ensemble does not use are left unmapped."""
    used = _consumed(spec)
    return {
        "name": spec.name,
        "platform": "ensemble",
        "max_batch_size": ENSEMBLE_MAX_BATCH_SIZE,
        "input": [_tensor(t) for t in spec.inputs],
        "output": [_tensor(t) for t in spec.outputs],
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": s.model, "model_version": -1, "input_map": s.input_map,
                    "output_map": {k: v for k, v in s.output_map.items() if v in used},
                }
                for s in spec.steps
            ]
        },
    }


def validate(config: dict) -> model_config_pb2.ModelConfig:
    """Parse against Triton's schema; unknown or mistyped fields raise."""
    try:
        return json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise BuildError(f"config for {config.get('name')!r} does not match Triton's ModelConfig: {exc}") from None


def check_ensembles(ensembles: dict[str, dict], models: dict[str, dict]) -> list[str]:
    """Problems in the ensembles' wiring; empty when every map matches its model."""
    problems: list[str] = []
    for ensemble in ensembles.values():
        tensors = {t["name"]: t for t in ensemble["input"]}
        produced: set[str] = set(tensors)
        for step in ensemble["ensemble_scheduling"]["step"]:
            model = models.get(step["model_name"])
            where = f"{ensemble['name']} -> {step['model_name']}"
            if model is None:
                problems.append(f"{where}: no such model")
                continue
            if model["max_batch_size"] < ensemble["max_batch_size"]:
                problems.append(f"{where}: model max_batch_size {model['max_batch_size']} < ensemble's")
            model_inputs = {t["name"]: t for t in model["input"]}
            model_outputs = {t["name"]: t for t in model["output"]}
            missing = set(model_inputs) - set(step["input_map"])
            if missing:
                problems.append(f"{where}: model inputs {sorted(missing)} are not mapped")
            for model_name, tensor in step["input_map"].items():
                if model_name not in model_inputs:
                    problems.append(f"{where}: model has no input {model_name!r}")
                elif tensor not in produced:
                    problems.append(f"{where}: ensemble tensor {tensor!r} is used before it is produced")
                elif not _fits(tensors[tensor], model_inputs[model_name]):
                    problems.append(f"{where}: {tensor!r} {_sig(tensors[tensor])} != input {model_name!r} {_sig(model_inputs[model_name])}")
            for model_name, tensor in step["output_map"].items():
                if model_name not in model_outputs:
                    problems.append(f"{where}: model has no output {model_name!r}")
                    continue
                if tensor in tensors and not _same_type(tensors[tensor], model_outputs[model_name]):
                    problems.append(f"{where}: output {model_name!r} {_sig(model_outputs[model_name])} != {tensor!r} {_sig(tensors[tensor])}")
                tensors.setdefault(tensor, model_outputs[model_name])
                produced.add(tensor)
        consumed = {t for step in ensemble["ensemble_scheduling"]["step"] for t in step["input_map"].values()}
        unused = produced - consumed - {t["name"] for t in ensemble["output"]} - {t["name"] for t in ensemble["input"]}
        if unused:
            problems.append(f"{ensemble['name']}: tensors {sorted(unused)} are produced but never used (Triton refuses this)")
        for output in ensemble["output"]:
            if output["name"] not in produced:
                problems.append(f"{ensemble['name']}: output {output['name']!r} is never produced")
            elif not _same_type(tensors[output["name"]], output):
                problems.append(f"{ensemble['name']}: output {output['name']!r} type differs from its producer")
    return problems


def _same_type(a: dict, b: dict) -> bool:
    return a["data_type"] == b["data_type"] and list(a["dims"]) == list(b["dims"])


def _fits(tensor: dict, model_input: dict) -> bool:
    """A tensor fits an input of its type whose dims are its own or -1 (any size), as
    Triton's ensemble check allows: a photo's 384 px crops go where any working size may."""
    dims, wanted = list(tensor["dims"]), list(model_input["dims"])
    return tensor["data_type"] == model_input["data_type"] and len(dims) == len(wanted) and all(
        w in (d, -1) for d, w in zip(dims, wanted))


def _sig(t: dict) -> str:
    return f"{t['data_type']}{list(t['dims'])}"


def repository_configs(profile: Profile, settings: Settings, planned: frozenset[str] = frozenset(),
                       tuning: Tuning | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """(model configs, ensemble configs) for a profile, validated and cross-checked;
    tuning None: the profile's committed tuning."""
    models = {s.name: model_config(s, profile, s.name in planned) for s in model_specs(profile, settings, tuning)}
    ensembles = {e.name: ensemble_config(e) for e in ensemble_specs(profile)}
    for config in (*models.values(), *ensembles.values()):
        validate(config)
    problems = check_ensembles(ensembles, models)
    if problems:
        raise BuildError("ensemble wiring does not match the models:\n  " + "\n  ".join(problems))
    return models, ensembles


def pbtxt(config: dict) -> str:
    return text_format.MessageToString(validate(config))


