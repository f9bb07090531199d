"""TensorRT engines for the gpu profile, built with polygraphy's loaders.

TensorRT's builder is not installable on the CPU build machines (its PyPI wheels
download from a host they cannot reach), so the engine step runs where TensorRT is
present (the NGC Triton image, a GPU build node) and elsewhere says so in one line
while the gpu profile serves the ONNX models through onnxruntime. The profile and flag
construction below is plain Python and unit-tested everywhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facefuse.contract import FACE_MASKS, MAX_FACES, WORKING_CROP_PX, WORKING_FACES, TensorSpec


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def shape_range(spec: TensorSpec, max_batch_size: int) -> ShapeRange:
    """Explicit min/opt/max for one input: the batch dimension spans 1..max_batch_size
    (optimised for half of it, what dynamic batching typically forms under load); a
    leading faces dimension spans 1..MAX_FACES (optimised for one face, the selfie case);
    the two sides of a working-size crop (faces, and their masks beside them in
    `beautify`) span WORKING_CROP_PX, optimised for the largest. Every other dimension
    must be static."""
    inner_min, inner_opt, inner_max = [], [], []
    for position, dim in enumerate(spec.dims):
        if dim == -1 and position == 0:
            inner_min.append(1), inner_opt.append(1), inner_max.append(MAX_FACES)
        elif dim == -1 and spec.dims in (WORKING_FACES.dims, FACE_MASKS.dims) and position in (1, 2):
            inner_min.append(min(WORKING_CROP_PX)), inner_opt.append(max(WORKING_CROP_PX)), inner_max.append(max(WORKING_CROP_PX))
        elif dim == -1:
            raise ValueError(f"input {spec.name!r} has a dynamic dimension {position + 1} TensorRT cannot profile")
        else:
            inner_min.append(dim), inner_opt.append(dim), inner_max.append(dim)
    opt_batch = max(1, max_batch_size // 2)
    return ShapeRange(
        (1, *inner_min), (opt_batch, *inner_opt), (max_batch_size, *inner_max)
    )


def optimization_profile(inputs: tuple[TensorSpec, ...], max_batch_size: int):
    """A polygraphy Profile covering every input (no TensorRT needed to build it)."""
    from polygraphy.backend.trt import Profile

    profile = Profile()
    for spec in inputs:
        r = shape_range(spec, max_batch_size)
        profile.add(spec.name, min=r.min, opt=r.opt, max=r.max)
    return profile


def builder_config(inputs: tuple[TensorSpec, ...], max_batch_size: int, fp16: bool, timing_cache: Path):
    """polygraphy CreateConfig: one explicit profile, FP16 on request, a shared timing cache."""
    from polygraphy.backend.trt import CreateConfig

    return CreateConfig(
        fp16=fp16,
        profiles=[optimization_profile(inputs, max_batch_size)],
        load_timing_cache=str(timing_cache) if timing_cache.is_file() else None,
    )


def build_engine(onnx_path: Path, plan_path: Path, inputs: tuple[TensorSpec, ...], max_batch_size: int,
                 fp16: bool, timing_cache: Path) -> Path:
    from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, SaveEngine

    config = builder_config(inputs, max_batch_size, fp16, timing_cache)
    engine = EngineFromNetwork(NetworkFromOnnxPath(str(onnx_path)), config=config, save_timing_cache=str(timing_cache))
    SaveEngine(engine, str(plan_path))()
    return plan_path


def trt_runner(plan_path: Path):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(plan_path))))
