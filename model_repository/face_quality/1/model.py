"""face_quality: refuse a face that cannot be fused well, score the others; mesh passed on."""

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.face_quality import check_faces, warnings_text
from facefuse.vision.face_quality import QualityLimits


class TritonPythonModel:
    def initialize(self, args):
        self.limits = QualityLimits.from_parameters(parameters(args))

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
