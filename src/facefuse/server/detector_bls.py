"""The face detector called from inside another stage (align's second pass on tiles of a
photo, beauty_faces'), through Triton's in-process BLS API. Only imported in the stub."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.contract import DETECTOR_MAX_BATCH

DETECTOR_OUTPUTS = ("box_deltas", "face_probs", "keypoint_deltas")


def detect_batch(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face_detector on (N, S, S, 3) letterboxed tiles, in batches it takes."""
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
