"""beauty_faces: raw detections -> the faces of a photo to beautify (all, or one chosen), cut into the canonical crop."""

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.contract import DETECTOR_MAX_BATCH
from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.align import AlignParams
from facefuse.stages.beauty import beauty_faces, no_changes


DETECTOR_OUTPUTS = ("box_deltas", "face_probs", "keypoint_deltas")


def detect_batch(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face_detector on (N, S, S, 3) letterboxed tiles through BLS (align's second pass)."""
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
            aligned = beauty_faces(
                array(request, "image")[0],
                array(request, "box_deltas")[0],
                array(request, "face_probs")[0],
                array(request, "keypoint_deltas")[0],
                float(array(request, "letterbox_scale").reshape(-1)[0]),
                int(array(request, "face_index").reshape(-1)[0]),
                self.params,
                detect_batch,
            )
            count = len(aligned.faces)
            return response(faces=aligned.faces[None], face_affines=aligned.affines[None],
                            face_masks=no_changes(count)[None],
                            # The photo's faces keep their own shape (beautify's fusion input).
                            profile_degree=np.zeros((1, 1), np.float32))

        return respond_each(requests, handle)
