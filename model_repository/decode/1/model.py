"""decode: encoded bytes -> RGB image, letterboxed detector input and its scale."""

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response
from facefuse.stages.decode import DecodeParams, decode


class TritonPythonModel:
    def initialize(self, args):
        self.params = DecodeParams.from_parameters(parameters(args))

    def execute(self, requests):
        def handle(request):
            decoded = decode(bytes(array(request, "image_bytes").reshape(-1)[0]), self.params)
            return response(
                image=decoded.image[None],
                detector_image=decoded.detector_image[None],
                letterbox_scale=np.array([[decoded.letterbox_scale]], np.float32),
            )

        return respond_each(requests, handle)
