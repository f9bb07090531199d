"""The poster from a request's fused faces: every face verified (refused as
FUSION_QUALITY_LOW if it fails), pasted into the template, AI label, encoded, with the
poster's quality and warnings from that check (facefuse.vision.poster_check).

Shared by the `postprocess` model (gpu profile) and the cpu profile's `fuse_faces` step,
which finishes the poster in the stub that fused it; each brings its own way to run the
face-mesh network (facefuse.stages.verify.MeshFinder). The template image comes from the
caller's own template bank, at the version `template_bank` resolved for the request.
Only imported in the stub.
"""

from __future__ import annotations

import numpy as np

from facefuse.server.adapter import array, response, text, verdict_tensors
from facefuse.stages.postprocess import postprocess
from facefuse.stages.template_bank import TemplateBank
from facefuse.stages.verify import MeshFinder, refuse_failed, verify_fused_faces
from facefuse.vision.beauty import poster_detail_share
from facefuse.vision.poster_check import describe_poster


def finish_poster(bank: TemplateBank, find_meshes: MeshFinder, request, fused_faces: np.ndarray,
                  fused_masks: np.ndarray):
    """fused_faces (K, S, S, 3) and fused_masks (K, S, S) of one request -> its response."""
    template = bank.get(text(request, "template_id"), int(array(request, "template_version").reshape(-1)[0]))
    affines = array(request, "template_affines")[0]
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
        fused_masks,
        affines,
        add_label=bool(array(request, "add_label").reshape(-1)[0]),
        output_format=text(request, "output_format").lower(),
        output_quality=int(array(request, "output_quality").reshape(-1)[0]),
        details=template.paste_details(affines, fused_faces.shape[1]),
        detail_share=poster_detail_share(array(request, "beauty").reshape(-1)[0]),
    )
    return response(poster=np.array([[poster]], dtype=np.object_), **verdict_tensors("poster", quality, warnings))
