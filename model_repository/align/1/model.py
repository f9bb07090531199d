"""align: raw detections -> the photo's main face, gated and cut into the canonical crop."""

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.align import AlignParams, align_main_face


class TritonPythonModel:
    def initialize(self, args):
        p = parameters(args)
        self.params = AlignParams(
            detector_input_px=int(p["detector_input_px"]),
            score_threshold=float(p["score_threshold"]),
            nms_iou=float(p["nms_iou"]),
            min_face_px=int(p["min_face_px"]),
            max_face_outside_fraction=float(p["max_face_outside_fraction"]),
        )

    def execute(self, requests):
        def handle(request):
            aligned = align_main_face(
                array(request, "image")[0],
                array(request, "box_deltas")[0],
                array(request, "face_probs")[0],
                array(request, "keypoint_deltas")[0],
                float(array(request, "letterbox_scale").reshape(-1)[0]),
                self.params,
            )
            return response(faces=aligned.faces[None], face_affines=aligned.affines[None], face_boxes=aligned.boxes[None])

        return respond_each(requests, handle)
