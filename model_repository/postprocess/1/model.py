"""postprocess: fused crops pasted into the template, AI label, encoded poster."""

import numpy as np

from facefuse.server.adapter import array, respond_each, response, text
from facefuse.stages.postprocess import postprocess


class TritonPythonModel:
    def execute(self, requests):
        def handle(request):
            poster = postprocess(
                array(request, "template_image")[0],
                array(request, "fused_faces")[0],
                array(request, "fused_masks")[0],
                array(request, "template_affines")[0],
                add_label=bool(array(request, "add_label").reshape(-1)[0]),
                output_format=text(request, "output_format").lower(),
                output_quality=int(array(request, "output_quality").reshape(-1)[0]),
            )
            return response(poster=np.array([[poster]], dtype=np.object_))

        return respond_each(requests, handle)
