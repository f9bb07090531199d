"""beauty_paste: beautified crops pasted back into the photo, AI label, encoded."""

import numpy as np

from facefuse.server.adapter import array, respond_each, response, text
from facefuse.stages.beauty import beauty_paste


class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        def handle(request):
            photo = beauty_paste(
                array(request, "image")[0],
                array(request, "beautified_faces")[0],
                array(request, "beautified_masks")[0],
                array(request, "face_affines")[0],
                add_label=bool(array(request, "add_label").reshape(-1)[0]),
                output_format=text(request, "output_format").lower(),
                output_quality=int(array(request, "output_quality").reshape(-1)[0]),
            )
            return response(photo=np.array([[photo]], dtype=np.object_))

        return respond_each(requests, handle)
