"""align: raw detections -> the photo's main face, gated and cut into the canonical crop.

When the detector found no face, align asks it again on tiles of the photo (a second
pass for a small face in a large photo) through Triton's in-process BLS API.
"""

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.server.detector_bls import detect_batch
from facefuse.stages.align import AlignParams, align_main_face


class TritonPythonModel:
    def initialize(self, args):
        self.params = AlignParams.from_parameters(parameters(args))

    def execute(self, requests):
        def handle(request):
            aligned = align_main_face(
                array(request, "image")[0],
                array(request, "box_deltas")[0],
                array(request, "face_probs")[0],
                array(request, "keypoint_deltas")[0],
                float(array(request, "letterbox_scale").reshape(-1)[0]),
                self.params,
                detect_batch,
            )
            return response(faces=aligned.faces[None], face_affines=aligned.affines[None], face_boxes=aligned.boxes[None])

        return respond_each(requests, handle)
