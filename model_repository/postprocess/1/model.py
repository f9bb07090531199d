"""postprocess: every fused face verified (refused as FUSION_QUALITY_LOW if it fails),
then pasted into the template, AI label, encoded poster, with the poster's quality and
warnings from that check (facefuse.vision.poster_check.describe_poster).

The template image comes from this stage's own template bank, at the version that
`template_bank` resolved for the request.
"""

from pathlib import Path

import numpy as np

from facefuse.server.adapter import array, parameters, respond_each, response, text, verdict_tensors
from facefuse.server.landmarks_bls import find_meshes
from facefuse.stages.postprocess import postprocess
from facefuse.stages.template_bank import TemplateBank
from facefuse.stages.verify import refuse_failed, verify_fused_faces
from facefuse.templates import TemplateStore
from facefuse.vision.beauty import poster_detail_share
from facefuse.vision.poster_check import describe_poster


class TritonPythonModel:
    def initialize(self, args):
        self.bank = TemplateBank(TemplateStore(Path(parameters(args)["template_dir"])))

    def execute(self, requests):
        def handle(request):
            template = self.bank.get(text(request, "template_id"), int(array(request, "template_version").reshape(-1)[0]))
            fused_faces, affines = array(request, "fused_faces")[0], array(request, "template_affines")[0]
            verdicts = verify_fused_faces(
                fused_faces, array(request, "template_faces")[0], array(request, "template_meshes")[0],
                array(request, "user_faces")[0], array(request, "user_meshes")[0],
                float(array(request, "profile_degree").reshape(-1)[0]), find_meshes,
            )
            refuse_failed(verdicts)
            quality, warnings = describe_poster(verdicts)
            poster = postprocess(
                template.image,
                fused_faces,
                array(request, "fused_masks")[0],
                affines,
                add_label=bool(array(request, "add_label").reshape(-1)[0]),
                output_format=text(request, "output_format").lower(),
                output_quality=int(array(request, "output_quality").reshape(-1)[0]),
                details=template.paste_details(affines, fused_faces.shape[1]),
                detail_share=poster_detail_share(array(request, "beauty").reshape(-1)[0]),
            )
            return response(poster=np.array([[poster]], dtype=np.object_), **verdict_tensors("poster", quality, warnings))

        return respond_each(requests, handle)
