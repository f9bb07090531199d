"""face_quality: refuse a face that cannot be fused well, score the others; mesh passed on."""

from facefuse.server.adapter import array, parameters, respond_each, response, verdict_tensors
from facefuse.stages.face_quality import check_faces
from facefuse.vision.face_quality import QualityLimits


class TritonPythonModel:
    def initialize(self, args):
        self.limits = QualityLimits.from_parameters(parameters(args))

    def execute(self, requests):
        def handle(request):
            meshes = array(request, "face_meshes")
            verdict = check_faces(array(request, "faces")[0], meshes[0], array(request, "face_affines")[0], self.limits)
            return response(checked_meshes=meshes, **verdict_tensors("face", verdict.quality, verdict.warnings))

        return respond_each(requests, handle)
