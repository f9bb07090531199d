"""face_quality: refuse a face that cannot be fused well, score the others; mesh passed on."""

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.face_quality import check_faces, warnings_text
from facefuse.vision.face_quality import QualityLimits


class TritonPythonModel:
    def initialize(self, args):
        p = parameters(args)
        self.limits = QualityLimits(
            max_yaw_deg=float(p["max_yaw_deg"]),
            max_pitch_deg=float(p["max_pitch_deg"]),
            max_eyes_covered=float(p["max_eyes_covered"]),
            max_one_eye_covered=float(p["max_one_eye_covered"]),
            max_strands=float(p["max_face_strands"]),
            min_brightness=float(p["min_face_brightness"]),
            min_sharpness=float(p["min_face_sharpness"]),
        )

    def execute(self, requests):
        def handle(request):
            meshes = array(request, "face_meshes")
            verdict = check_faces(array(request, "faces")[0], meshes[0], array(request, "face_affines")[0], self.limits)
            return response(
                checked_meshes=meshes,
                face_quality=np.array([[verdict.quality]], np.float32),
                face_warnings=np.array([[warnings_text(verdict.warnings).encode()]], dtype=np.object_),
            )

        return respond_each(requests, handle)
