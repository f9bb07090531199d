"""postprocess (gpu profile): every fused face verified (refused as FUSION_QUALITY_LOW if it
fails), then pasted into the template, AI label, encoded poster, with the poster's quality
and warnings from that check (facefuse.server.poster). The cpu profile finishes the
poster inside fuse_faces with the same code.

The verification runs face_landmarks through BLS, at the serving release's version when
the config names one (facefuse.models_admin.versions.VERIFICATION_LANDMARKS).
"""

from pathlib import Path

from facefuse.models_admin.versions import VERIFICATION_LANDMARKS
from facefuse.server.adapter import array, parameters, respond_each
from facefuse.server.landmarks_bls import mesh_finder
from facefuse.server.poster import finish_poster
from facefuse.stages.template_bank import TemplateBank
from facefuse.templates import TemplateStore


class TritonPythonModel:
    def initialize(self, args):
        params = parameters(args)
        self.bank = TemplateBank(TemplateStore(Path(params["template_dir"])))
        self.find_meshes = mesh_finder(int(params.get(VERIFICATION_LANDMARKS, "-1")))

    def execute(self, requests):
        return respond_each(requests, lambda request: finish_poster(
            self.bank, self.find_meshes, request, array(request, "fused_faces")[0], array(request, "fused_masks")[0]))
