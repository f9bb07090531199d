"""beauty_faces: raw detections -> the faces of a photo to beautify (all, or one chosen), cut into the canonical crop."""

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.server.detector_bls import detect_batch
from facefuse.stages.align import AlignParams
from facefuse.stages.beauty import beauty_faces, no_changes


class TritonPythonModel:
    def initialize(self, args):
        self.params = AlignParams.from_parameters(parameters(args))

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
