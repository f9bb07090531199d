"""The verification inside postprocess (fuse_faces on the cpu profile): every fused face looked at again before the
poster ships (facefuse.vision.poster_check), refused as FUSION_QUALITY_LOW if it fails.

`find_meshes` runs the face-mesh network on fused crops: through BLS in the gpu
profile's postprocess, on an in-process session (`meshes_in_process`) in the cpu
profile's fuse_faces and in the local pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from facefuse.contract import FACE_CROP_PX
from facefuse.errors import FacefuseError, Reason
from facefuse.vision.alignment import scale_meshes
from facefuse.vision.poster_check import PosterVerdict, check_fused_face

# (K, FACE_CROP_PX, FACE_CROP_PX, 3) uint8 -> meshes (K, 468, 3) in those pixels, presence (K,)
MeshFinder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

HINT = ("this photo did not fuse cleanly into this template; a sharper, evenly lit photo looking at the camera, "
        "with nothing over the eyes or mouth, usually does")


def meshes_in_process(session, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A MeshFinder on the face-mesh network's ONNX Runtime session: K crops in one call."""
    meshes, presence = session.run(None, {"faces": crops[None]})
    return meshes[0], presence[0]


class FusionQualityError(FacefuseError):
    reason = Reason.FUSION_QUALITY_LOW


def verify_fused_faces(
    fused_faces: np.ndarray, template_faces: np.ndarray, template_meshes: np.ndarray,
    user_faces: np.ndarray, user_meshes: np.ndarray, profile_degree: float,
    find_meshes: MeshFinder,
) -> list[PosterVerdict]:
    """One verdict per fused face (K faces of one poster; fused and template crops at the
    working size, the user's at FACE_CROP_PX)."""
    size = fused_faces.shape[1]
    crops = fused_faces if size == FACE_CROP_PX else np.stack(
        [cv2.resize(face, (FACE_CROP_PX, FACE_CROP_PX), interpolation=cv2.INTER_CUBIC) for face in fused_faces])
    meshes, presence = find_meshes(np.ascontiguousarray(crops))
    found = scale_meshes(meshes, size / FACE_CROP_PX)
    return [
        check_fused_face(fused_faces[k], template_faces[k], template_meshes[k], user_faces[k], user_meshes[k],
                         found[k], float(presence[k]), profile_degree)
        for k in range(len(fused_faces))
    ]


def refuse_failed(verdicts: list[PosterVerdict]) -> None:
    """Raises FusionQualityError naming what failed, if any face failed."""
    failed = [f"face {k}: {', '.join(v.failures)}" for k, v in enumerate(verdicts) if not v.ok]
    if failed:
        raise FusionQualityError(f"the fused poster failed its check ({'; '.join(failed)}): {HINT}")

