"""template_bank: template id + face indices -> the precomputed template side (hot-reloaded)."""

from pathlib import Path

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response, text
from facefuse.stages.template_bank import TemplateBank
from facefuse.templates import TemplateStore


class TritonPythonModel:
    def initialize(self, args):
        self.bank = TemplateBank(TemplateStore(Path(parameters(args)["template_dir"])), with_image=False)

    def execute(self, requests):
        def handle(request):
            version, faces, meshes, affines = self.bank.lookup(text(request, "template_id"), array(request, "face_indices")[0])
            return response(
                template_version=np.array([[version]], np.int64), template_faces=faces[None],
                template_meshes=meshes[None], template_affines=affines[None],
            )

        return respond_each(requests, handle)
