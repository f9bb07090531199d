"""The face-mesh network called from inside the gpu profile's postprocess (the poster's
verification looks for the face again on the fused crops), through Triton's in-process
BLS API. The cpu profile's fuse_faces runs the same network in-process instead. Only
imported in the stub."""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.stages.verify import MeshFinder


def mesh_finder(version: int) -> MeshFinder:
    """face_landmarks `version` (-1: the newest loaded) on (K, F, F, 3) crops, one request
    of K faces: meshes (K, 468, 3), presence (K,)."""

    def find_meshes(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name="face_landmarks", model_version=version,
            requested_output_names=["face_meshes", "face_presence"],
            inputs=[pb_utils.Tensor("faces", np.ascontiguousarray(crops[None]))],
        )
        result = request.exec()
        if result.has_error():
            raise RuntimeError(f"face_landmarks {version} (verification): {result.error().message()}")
        meshes = pb_utils.get_output_tensor_by_name(result, "face_meshes").as_numpy()[0]
        presence = pb_utils.get_output_tensor_by_name(result, "face_presence").as_numpy()[0]
        return meshes, presence

    return find_meshes
