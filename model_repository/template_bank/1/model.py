"""template_bank: template id + face indices -> the precomputed template side (hot-reloaded)."""

import json
from pathlib import Path

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response, text
from facefuse.stages.template_bank import TemplateBank
from facefuse.templates import TemplateStore


class TritonPythonModel:
    def initialize(self, args):
        # Versions after 1 (`facefuse models publish` of a detector or landmarks model) name
        # the model release whose analysis of the templates they serve.
        pinned = Path(args["model_repository"]) / args["model_version"] / "analysis.json"
        analysis = json.loads(pinned.read_text())["analysis"] if pinned.is_file() else None
        self.bank = TemplateBank(TemplateStore(Path(parameters(args)["template_dir"])), with_image=False,
                                 analysis=analysis)

    def execute(self, requests):
        def handle(request):
            version, faces, meshes, affines = self.bank.lookup(text(request, "template_id"), array(request, "face_indices")[0])
            return response(
                template_version=np.array([[version]], np.int64), template_faces=faces[None],
                template_meshes=meshes[None], template_affines=affines[None],
            )

        return respond_each(requests, handle)
