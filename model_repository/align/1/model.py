"""align: raw detections -> the photo's main face, gated and cut into the canonical crop.

When the detector found no face, align asks it again on tiles of the photo (a second
pass for a small face in a large photo) through Triton's in-process BLS API.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.contract import DETECTOR_MAX_BATCH
from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.align import AlignParams, align_main_face

DETECTOR_OUTPUTS = ("box_deltas", "face_probs", "keypoint_deltas")


def detect_batch(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face_detector on (N, S, S, 3) letterboxed tiles, through BLS, in batches it takes."""
    parts = []
    for start in range(0, len(images), DETECTOR_MAX_BATCH):
        request = pb_utils.InferenceRequest(
            model_name="face_detector", requested_output_names=list(DETECTOR_OUTPUTS),
            inputs=[pb_utils.Tensor("detector_image", np.ascontiguousarray(images[start : start + DETECTOR_MAX_BATCH]))],
        )
        result = request.exec()
        if result.has_error():
            raise RuntimeError(f"face_detector (second pass): {result.error().message()}")
        parts.append([pb_utils.get_output_tensor_by_name(result, name).as_numpy() for name in DETECTOR_OUTPUTS])
    return tuple(np.concatenate(outputs) for outputs in zip(*parts))


class TritonPythonModel:
    def initialize(self, args):
        p = parameters(args)
        self.params = AlignParams(
            detector_input_px=int(p["detector_input_px"]),
            score_threshold=float(p["score_threshold"]),
            nms_iou=float(p["nms_iou"]),
            min_face_px=int(p["min_face_px"]),
            max_face_outside_fraction=float(p["max_face_outside_fraction"]),
            second_pass_tiles=int(p.get("second_pass_tiles", "0")),
        )

    def execute(self, requests):
        def handle(request):
            aligned = align_main_face(
                array(request, "image")[0],
                array(request, "box_deltas")[0],
                array(request, "face_probs")[0],
                array(request, "keypoint_deltas")[0],
                float(array(request, "letterbox_scale").reshape(-1)[0]),
                self.params,
                detect_batch,
            )
            return response(faces=aligned.faces[None], face_affines=aligned.affines[None], face_boxes=aligned.boxes[None])

        return respond_each(requests, handle)
