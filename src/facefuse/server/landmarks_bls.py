"""The face-mesh network called from inside the poster's verification (postprocess on
the gpu profile, fuse_faces on the cpu profile: it looks for the face again on the fused
crops), through Triton's in-process BLS API. Only imported in the stub."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils


def find_meshes(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """face_landmarks on (K, F, F, 3) crops (one request, K faces): meshes (K, 468, 3), presence (K,)."""
    request = pb_utils.InferenceRequest(
        model_name="face_landmarks", requested_output_names=["face_meshes", "face_presence"],
        inputs=[pb_utils.Tensor("faces", np.ascontiguousarray(crops[None]))],
    )
    result = request.exec()
    if result.has_error():
        raise RuntimeError(f"face_landmarks (verification): {result.error().message()}")
    meshes = pb_utils.get_output_tensor_by_name(result, "face_meshes").as_numpy()[0]
    presence = pb_utils.get_output_tensor_by_name(result, "face_presence").as_numpy()[0]
    return meshes, presence
