"""face_quality: the user's analysed face refused (pose, occlusion, light, blur) or
scored, before any fusion; its mesh is passed on, so `fuse` waits for the verdict."""

from __future__ import annotations

import numpy as np

from facefuse.vision.face_quality import Assessment, QualityLimits, assess, measure

WARNING_SEPARATOR = ","


def check_faces(faces: np.ndarray, meshes: np.ndarray, affines: np.ndarray, limits: QualityLimits) -> Assessment:
    """K faces (one per user photo): raises FaceError for the first unusable one; the
    score of several is the lowest, their warnings all of them."""
    assessments = [assess(measure(f, m, a), limits) for f, m, a in zip(faces, meshes, affines)]
    warnings = tuple(dict.fromkeys(w for a in assessments for w in a.warnings))
    return Assessment(min(a.quality for a in assessments), warnings)


def warnings_text(warnings: tuple[str, ...]) -> str:
    return WARNING_SEPARATOR.join(warnings)


def warnings_from_text(text: str) -> list[str]:
    return [w for w in text.split(WARNING_SEPARATOR) if w]
