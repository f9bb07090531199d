"""Numerical checks: each built model against its reference, with polygraphy, on real faces.

References run the original artifact in its own runtime:
- face_detector: the package's RetinaFace ONNX graph in ONNX Runtime, preprocessing in numpy;
- face_landmarks: the package's face_landmark.tflite in the TFLite interpreter;
- fuse: the PyTorch module the ONNX was exported from;
- face_embedding (eval only): the package's MobileFaceNet.tflite in the TFLite interpreter.
Inputs are real photos from installed packages (facefuse.samples), letterboxed or
aligned exactly as the serving stages do it. The result, tolerances included, is
written beside the model as model.check.json; a failure names the worst output
element and the sample it came from.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from facefuse import samples
from facefuse.contract import FACE_CROP_PX, MESH_INPUT_PX, MESH_POINTS, WORKING_CROP_PX
from facefuse.stages.align import AlignParams, align_faces, detect
from facefuse.stages.decode import DecodeParams, decode
from facefuse.vision.alignment import scale_crops
from facefuse_build.detector import BGR_MEAN
from facefuse_build.errors import NumericsCheckError


# Polygraphy logs every comparison at INFO; the report file holds what matters.
G_LOGGER.module_severity = G_LOGGER.WARNING


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# Detector: only the preprocessing moved into the graph, results must be the same.
DETECTOR_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-3)
# Mesh: float32 replay vs TFLite kernels; 0.05 px on a 384 px crop.
LANDMARKS_TOLERANCE = Tolerance(atol=0.05, rtol=1e-3)
# Fuse: uint8 outputs. Float rounding differs between the two runtimes (and between
# CPUs' vector units), flipping a few pixels by a level; 3 of 255 leaves room for that
# while any real disagreement (a wrong warp, mask or colour) is far larger.
FUSE_TOLERANCE = Tolerance(atol=3.0, rtol=0.0)
# Embedding: the same float32 graph in another runtime plus a folded uint8 prelude; the
# outputs are about 8 at most, so 1e-3 is far below anything that moves a cosine.
# beautify: uint8 pixels, like fuse (a bilinear lookup may round the other way).
BEAUTY_TOLERANCE = Tolerance(atol=3.0, rtol=0.0)
EMBEDDING_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-3)
# FP16 TensorRT engines are kept only if they stay within these against ONNX Runtime.
FP16_TOLERANCES = {
    "face_detector": Tolerance(atol=2e-2, rtol=2e-2),
    "face_landmarks": Tolerance(atol=0.5, rtol=1e-2),
    "fuse": Tolerance(atol=6.0, rtol=0.0),
}


# Portraits looking into the camera.
FRONTAL_SAMPLES = ("astronaut", "grace_hopper")


def sample_photos() -> dict[str, bytes]:
    photos = {"astronaut": samples.astronaut(), "grace_hopper": samples.grace_hopper()}
    try:
        photos["group"] = samples.group()
    except FileNotFoundError:
        pass
    return photos


# ---- reference runners -------------------------------------------------------------
class RetinaFaceReferenceRunner(BaseRunner):
    """The original graph, fed the way Pytorch_Retinaface feeds it (BGR minus mean, NCHW)."""

    def __init__(self, model_bytes: bytes, input_px: int):
        super().__init__(prefix="retinaface-reference")
        self.model_bytes = model_bytes
        self.input_px = input_px

    def activate_impl(self):
        import onnxruntime as ort

        self.session = ort.InferenceSession(self.model_bytes, providers=["CPUExecutionProvider"])

    def get_input_metadata_impl(self):
        return TensorMetadata().add("detector_image", np.uint8, (None, self.input_px, self.input_px, 3))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        rgb = feed_dict["detector_image"].astype(np.float32)
        bgr = rgb[..., ::-1] - np.array(BGR_MEAN, np.float32)
        loc, conf, landmarks = self.session.run(None, {"input": np.ascontiguousarray(bgr.transpose(0, 3, 1, 2))})
        self.inference_time = time.perf_counter() - start
        return OrderedDict(box_deltas=loc, face_probs=conf[..., 1], keypoint_deltas=landmarks)

    def deactivate_impl(self):
        del self.session


class TfliteFaceMeshReferenceRunner(BaseRunner):
    """face_landmark.tflite in the TFLite interpreter, one face at a time."""

    def __init__(self, tflite_path: Path):
        super().__init__(prefix="face-mesh-tflite")
        self.tflite_path = tflite_path

    def activate_impl(self):
        from tflite_runtime.interpreter import Interpreter

        self.interpreter = Interpreter(str(self.tflite_path), num_threads=1)
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        self.mesh_index, self.flag_index = outputs["conv2d_20"], outputs["conv2d_30"]

    def get_input_metadata_impl(self):
        return TensorMetadata().add("faces", np.uint8, (None, None, FACE_CROP_PX, FACE_CROP_PX, 3))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        faces = feed_dict["faces"]
        batch, count = faces.shape[:2]
        pool = FACE_CROP_PX // MESH_INPUT_PX
        meshes = np.zeros((batch, count, MESH_POINTS, 3), np.float32)
        presence = np.zeros((batch, count), np.float32)
        for b in range(batch):
            for k in range(count):
                crop = faces[b, k].astype(np.float32).reshape(MESH_INPUT_PX, pool, MESH_INPUT_PX, pool, 3).mean((1, 3))
                self.interpreter.set_tensor(self.input_index, (crop / 255.0)[None].astype(np.float32))
                self.interpreter.invoke()
                meshes[b, k] = self.interpreter.get_tensor(self.mesh_index).reshape(MESH_POINTS, 3) * pool
                flag = float(self.interpreter.get_tensor(self.flag_index).reshape(-1)[0])
                presence[b, k] = 1.0 / (1.0 + np.exp(-flag))
        self.inference_time = time.perf_counter() - start
        return OrderedDict(face_meshes=meshes, face_presence=presence)

    def deactivate_impl(self):
        del self.interpreter


class TfliteEmbeddingReferenceRunner(BaseRunner):
    """MobileFaceNet.tflite in the TFLite interpreter, fed as the Android code feeds it."""

    def __init__(self, tflite_bytes: bytes):
        super().__init__(prefix="mobilefacenet-tflite")
        self.tflite_bytes = tflite_bytes

    def activate_impl(self):
        from tflite_runtime.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=self.tflite_bytes, num_threads=1)
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]

    def get_input_metadata_impl(self):
        from facefuse.eval.embedding import EMBEDDING_BATCH, EMBEDDING_PX, INPUT_NAME

        return TensorMetadata().add(INPUT_NAME, np.uint8, (EMBEDDING_BATCH, EMBEDDING_PX, EMBEDDING_PX, 3))

    def infer_impl(self, feed_dict):
        from facefuse.eval.embedding import INPUT_NAME, OUTPUT_NAME

        start = time.perf_counter()
        faces = (feed_dict[INPUT_NAME].astype(np.float32) - 127.5) / 128.0
        self.interpreter.set_tensor(self.input_index, faces)
        self.interpreter.invoke()
        embeddings = self.interpreter.get_tensor(self.output_index).copy()
        self.inference_time = time.perf_counter() - start
        return OrderedDict([(OUTPUT_NAME, embeddings)])

    def deactivate_impl(self):
        del self.interpreter


# ---- inputs ----------------------------------------------------------------------
def detector_inputs(input_px: int) -> list[tuple[str, dict]]:
    params = DecodeParams(input_px)
    return [(name, {"detector_image": decode(data, params).detector_image[None]}) for name, data in sample_photos().items()]


def aligned_faces(detector_path: Path, input_px: int) -> list[tuple[str, np.ndarray]]:
    """(sample name, faces (K, F, F, 3)) cut by the built detector and the align stage."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(detector_path), providers=["CPUExecutionProvider"])
    decode_params, align_params = DecodeParams(input_px), AlignParams(input_px)
    result = []
    for name, data in sample_photos().items():
        decoded = decode(data, decode_params)
        raw = [x[0] for x in session.run(None, {"detector_image": decoded.detector_image[None]})]
        detections = detect(*raw, decoded.letterbox_scale, align_params)
        if detections:
            result.append((name, align_faces(decoded.image, detections[:6]).faces))
    if not result:
        raise NumericsCheckError("the built detector found no face in any sample photo; the detector build is broken")
    return result


def embedding_inputs(detector_path: Path, input_px: int) -> list[tuple[str, dict]]:
    """Pairs of real faces (every sample face) aligned to ArcFace's 112x112 template."""
    import onnxruntime as ort

    from facefuse.eval.embedding import INPUT_NAME, align_112

    session = ort.InferenceSession(str(detector_path), providers=["CPUExecutionProvider"])
    decode_params, align_params = DecodeParams(input_px), AlignParams(input_px)
    faces = []
    for name, data in sample_photos().items():
        decoded = decode(data, decode_params)
        raw = [x[0] for x in session.run(None, {"detector_image": decoded.detector_image[None]})]
        for index, detection in enumerate(detect(*raw, decoded.letterbox_scale, align_params)[:6]):
            faces.append((f"{name}[{index}]", align_112(decoded.image, detection.keypoints)))
    if len(faces) < 2:
        raise NumericsCheckError("the built detector found fewer than two sample faces; the detector build is broken")
    faces += faces[:1] * (len(faces) % 2)
    return [(f"{a[0]}+{b[0]}", {INPUT_NAME: np.stack([a[1], b[1]])}) for a, b in zip(faces[::2], faces[1::2])]


def landmarks_inputs(faces: list[tuple[str, np.ndarray]]) -> list[tuple[str, dict]]:
    return [(name, {"faces": crops[None]}) for name, crops in faces]


def fuse_inputs(faces_and_meshes: list[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[str, dict]]:
    """Every ordered pair of sample faces, at a few degree settings, the template side at
    the full crop size and at the smallest working size."""
    feeds = []
    for user_name, user_faces, user_meshes in faces_and_meshes:
        for template_name, full_faces, full_meshes in faces_and_meshes:
            if user_name == template_name:
                continue
            small_faces, small_meshes, _ = scale_crops(
                full_faces[:1], full_meshes[:1], np.zeros((1, 2, 3), np.float32), min(WORKING_CROP_PX))
            for (fuse_degree, profile_degree), (template_faces, template_meshes) in (
                ((80.0, 50.0), (full_faces, full_meshes)), ((30.0, 100.0), (full_faces, full_meshes)),
                ((100.0, 100.0), (small_faces, small_meshes)),
            ):
                size = template_faces.shape[1]
                feeds.append((f"{user_name}->{template_name}@{size} fuse={fuse_degree:g} profile={profile_degree:g}", {
                    "user_faces": user_faces[None, :1], "user_meshes": user_meshes[None, :1],
                    "template_faces": template_faces[None, :1], "template_meshes": template_meshes[None, :1],
                    "fuse_degree": np.array([[fuse_degree]], np.float32),
                    "profile_degree": np.array([[profile_degree]], np.float32),
                }))
    return feeds


def beauty_inputs(faces_and_meshes: list[tuple[str, np.ndarray, np.ndarray]]) -> list[tuple[str, dict]]:
    """Each sample face at a few beauty settings, at the full crop size and the smallest working size."""
    feeds = []
    for name, faces, meshes in faces_and_meshes:
        small_faces, small_meshes, _ = scale_crops(faces[:1], meshes[:1], np.zeros((1, 2, 3), np.float32),
                                                   min(WORKING_CROP_PX))
        for values, (crops, geometry) in (([0, 0, 0, 0], (faces, meshes)), ([50, 50, 50, 50], (faces, meshes)),
                                          ([100, 30, 70, 100], (small_faces, small_meshes))):
            size = crops.shape[1]
            feeds.append((f"{name}@{size} beauty={values}", {
                "faces": crops[None, :1], "face_masks": np.zeros((1, 1, size, size), np.uint8),
                "face_meshes": geometry[None, :1], "user_meshes": meshes[None, :1],
                "profile_degree": np.array([[50.0]], np.float32), "beauty": np.array([values], np.float32),
            }))
    return feeds


# ---- comparison --------------------------------------------------------------------
def compare(
    model_name: str, candidate: BaseRunner, reference: BaseRunner, named_feeds: list[tuple[str, dict]],
    tolerance: Tolerance, report_path: Path | None,
) -> dict:
    """Run both on every feed; write the report; raise NumericsCheckError on failure."""
    names = [name for name, _ in named_feeds]
    results = Comparator.run([candidate, reference], data_loader=[feed for _, feed in named_feeds])
    accuracy = Comparator.compare_accuracy(
        results, compare_func=SimpleCompareFunc(atol=tolerance.atol, rtol=tolerance.rtol)
    )
    candidate_outputs = results[candidate.name]
    reference_outputs = results[reference.name]
    worst = {"abs_error": -1.0}
    per_output: dict[str, float] = {}
    for index, (got, want) in enumerate(zip(candidate_outputs, reference_outputs)):
        for output_name in want:
            diff = np.abs(np.asarray(got[output_name], np.float64) - np.asarray(want[output_name], np.float64))
            at = np.unravel_index(int(np.argmax(diff)), diff.shape)
            error = float(diff[at])
            per_output[output_name] = max(per_output.get(output_name, 0.0), error)
            if error > worst["abs_error"]:
                worst = {
                    "abs_error": error, "output": output_name, "sample": names[index],
                    "element": [int(i) for i in at], "got": float(np.asarray(got[output_name])[at]),
                    "want": float(np.asarray(want[output_name])[at]),
                }
    report = {
        "model": model_name,
        "reference": reference.name.split("-N")[0],
        "candidate": candidate.name.split("-N")[0],
        "tool": "polygraphy Comparator + SimpleCompareFunc",
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "samples": names,
        "max_abs_error_per_output": per_output,
        "worst": worst,
        "passed": bool(accuracy),
    }
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if not report["passed"]:
        raise NumericsCheckError(
            f"{model_name} differs from its reference beyond atol={tolerance.atol}, rtol={tolerance.rtol}: "
            f"worst |error| {worst['abs_error']:.4g} in output {worst.get('output')!r} at element "
            f"{worst.get('element')} of sample {worst.get('sample')!r} (got {worst.get('got')}, want {worst.get('want')})"
        )
    return report


def onnxrt_runner(path: Path) -> OnnxrtRunner:
    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]))


class TorchModuleRunner(BaseRunner):
    """A PyTorch module on the CPU (polygraphy's PytRunner always moves inputs to CUDA)."""

    def __init__(self, module, example_feed: dict[str, np.ndarray], output_names: tuple[str, ...]):
        super().__init__(prefix="pytorch")
        self.module, self.output_names = module, output_names
        self.input_names = tuple(example_feed)
        # Every dimension dynamic: samples differ in faces per request.
        self.metadata = TensorMetadata()
        for name, value in example_feed.items():
            self.metadata.add(name, value.dtype, tuple(None for _ in value.shape))

    def get_input_metadata_impl(self):
        return self.metadata

    def infer_impl(self, feed_dict):
        import torch

        start = time.perf_counter()
        with torch.no_grad():
            outputs = self.module(*[torch.from_numpy(np.ascontiguousarray(feed_dict[n])) for n in self.input_names])
        self.inference_time = time.perf_counter() - start
        return OrderedDict((name, out.numpy()) for name, out in zip(self.output_names, outputs))
