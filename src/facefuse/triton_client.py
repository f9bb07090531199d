"""Request tensors for the facefuse ensembles, shared by every Triton caller.

tritonclient's sync and asyncio gRPC clients take the same InferInput objects, so the
CLI, the tests, the benchmark and the gateway all build requests here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.grpc import InferenceServerClient, InferInput, InferRequestedOutput

from facefuse import contract as c
from facefuse.errors import OptionError
from facefuse.stages.face_quality import warnings_from_text
from facefuse.vision.beauty import BeautyOptions


@dataclass(frozen=True)
class FuseOptions:
    fuse_degree: float = c.DEFAULT_FUSE_DEGREE
    profile_degree: float = c.DEFAULT_PROFILE_DEGREE
    add_label: bool = True
    output_format: str = "jpeg"
    output_quality: int = c.DEFAULT_OUTPUT_QUALITY
    beauty: BeautyOptions = BeautyOptions()

    def validated(self) -> "FuseOptions":
        low, high = c.DEGREE_RANGE
        for name in ("fuse_degree", "profile_degree"):
            value = getattr(self, name)
            if not low <= value <= high:
                raise OptionError(f"{name} {value} is out of range; use {low:g}..{high:g}")
        if self.output_format not in c.OUTPUT_FORMATS:
            raise OptionError(f"output format {self.output_format!r} is not one of {', '.join(c.OUTPUT_FORMATS)}")
        if not 1 <= self.output_quality <= 100:
            raise OptionError(f"output quality {self.output_quality} is out of range; use 1..100")
        self.beauty.validated()
        return self


class SendHeaders(InferenceServerClientPlugin):
    """tritonclient plugin adding fixed headers (the gateway key) to every call."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def __call__(self, request) -> None:
        # A new dict: the caller's own headers argument is not changed.
        request.headers = {**self.headers, **request.headers}


def with_gateway_key(client, gateway_key: str | None):
    """The (sync or asyncio) tritonclient gRPC client, sending the gateway key with every
    call (Triton refuses inference without it: server.triton.GATEWAY_APIS)."""
    from facefuse.server.triton import gateway_grpc_headers

    if gateway_key:
        client.register_plugin(SendHeaders(gateway_grpc_headers(gateway_key)))
    return client


def keyed_client(url: str, gateway_key: str | None, **kwargs) -> InferenceServerClient:
    return with_gateway_key(InferenceServerClient(url, **kwargs), gateway_key)


def _tensor(name: str, dtype: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), dtype)
    tensor.set_data_from_numpy(value)
    return tensor


def _bytes(value: bytes | str) -> np.ndarray:
    return np.array([[value.encode() if isinstance(value, str) else value]], dtype=np.object_)


def option_inputs(template_id: str, face_indices, options: FuseOptions) -> list[InferInput]:
    options = options.validated()
    return [
        _tensor("template_id", "BYTES", _bytes(template_id)),
        _tensor("face_indices", "INT32", np.asarray(face_indices, np.int32).reshape(1, -1)),
        _tensor("fuse_degree", "FP32", np.array([[options.fuse_degree]], np.float32)),
        _tensor("profile_degree", "FP32", np.array([[options.profile_degree]], np.float32)),
        _tensor("add_label", "BOOL", np.array([[options.add_label]], np.bool_)),
        _tensor("output_format", "BYTES", _bytes(options.output_format)),
        _tensor("output_quality", "INT32", np.array([[options.output_quality]], np.int32)),
        _tensor("beauty", "FP32", options.beauty.tensor()),
    ]


def beautify_inputs(image: bytes, beauty: BeautyOptions, face_index: int = -1, add_label: bool = True,
                    output_format: str = "jpeg", output_quality: int = c.DEFAULT_OUTPUT_QUALITY) -> list[InferInput]:
    """face_beautify: a photo's faces (all: -1, or one, numbered left to right) adjusted."""
    FuseOptions(add_label=add_label, output_format=output_format, output_quality=output_quality, beauty=beauty).validated()
    return [
        _tensor("image_bytes", "BYTES", _bytes(image)),
        _tensor("face_index", "INT32", np.array([[face_index]], np.int32)),
        _tensor("beauty", "FP32", beauty.tensor()),
        _tensor("add_label", "BOOL", np.array([[add_label]], np.bool_)),
        _tensor("output_format", "BYTES", _bytes(output_format)),
        _tensor("output_quality", "INT32", np.array([[output_quality]], np.int32)),
    ]


def fusion_inputs(image: bytes, template_id: str, face_index: int = 0, options: FuseOptions = FuseOptions()) -> list[InferInput]:
    """face_fusion: one photo into one template face."""
    return [_tensor("image_bytes", "BYTES", _bytes(image)), *option_inputs(template_id, [face_index], options)]


def analyze_inputs(image: bytes) -> list[InferInput]:
    """face_analyze: the user side of a fusion, once per photo."""
    return [_tensor("image_bytes", "BYTES", _bytes(image))]


def user_face_inputs(user_faces: np.ndarray, user_meshes: np.ndarray) -> list[InferInput]:
    """The user side of face_fuse: K analysed faces. Built once, these serve any number
    of templates (InferInputs are only read when a request is sent)."""
    return [
        _tensor("user_faces", "UINT8", np.ascontiguousarray(user_faces[None], np.uint8)),
        _tensor("user_meshes", "FP32", np.ascontiguousarray(user_meshes[None], np.float32)),
    ]


def fuse_inputs(user_faces: np.ndarray, user_meshes: np.ndarray, template_id: str, face_indices,
                options: FuseOptions = FuseOptions()) -> list[InferInput]:
    """face_fuse: analysed user faces (K of them) into K faces of one template."""
    return [*user_face_inputs(user_faces, user_meshes), *option_inputs(template_id, face_indices, options)]


POSTER_OUTPUT = [InferRequestedOutput("poster")]
PHOTO_OUTPUT = [InferRequestedOutput("photo")]
# face_fuse: the poster and its own verdict; face_fusion: those and the verdict on the user's face.
FUSE_OUTPUTS = [InferRequestedOutput(n) for n in ("poster", "poster_quality", "poster_warnings")]
FUSION_OUTPUTS = [*FUSE_OUTPUTS, *(InferRequestedOutput(n) for n in ("user_quality", "user_warnings"))]
ANALYZE_OUTPUTS = [InferRequestedOutput(n) for n in ("user_faces", "user_meshes", "user_boxes", "user_quality", "user_warnings")]


def fusion_stages(client) -> tuple[str, ...]:
    """The models one fusion runs in, in order (a sync gRPC client): face_fusion's steps,
    which differ by profile (facefuse_build.configs). The gpu profile's postprocess calls
    face_landmarks (a step already) again through BLS for the verification; the cpu
    profile's fuse_faces runs that network in-process."""
    config = client.get_model_config("face_fusion", as_json=True)["config"]
    return tuple(dict.fromkeys(s["model_name"] for s in config["ensemble_scheduling"]["step"]))


def instance_counts(client, models: tuple[str, ...] | None = None) -> dict[str, int]:
    """Model instances per model (default: the fusion's stages), from Triton's configs
    (a sync gRPC client), in the order given."""
    counts = {}
    for name in models or fusion_stages(client):
        config = client.get_model_config(name, as_json=True)["config"]
        counts[name] = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
    return counts


def poster_bytes(result) -> bytes:
    return bytes(result.as_numpy("poster").reshape(-1)[0])


# A quality score (0..1) and the warnings that lowered it.
Verdict = tuple[float, list[str]]


def _verdict(result, of: str) -> Verdict:
    quality = float(result.as_numpy(f"{of}_quality").reshape(-1)[0])
    text = result.as_numpy(f"{of}_warnings").reshape(-1)[0]
    return quality, warnings_from_text(text.decode() if isinstance(text, bytes) else str(text))


def user_verdict(result) -> Verdict:
    """The quality score and warnings of the user's face, from face_analyze or face_fusion."""
    return _verdict(result, "user")


def poster_verdict(result) -> Verdict:
    """The poster's own quality score and warnings, from face_fuse or face_fusion."""
    return _verdict(result, "poster")
