"""The cpu profile's steps: each runs its network in-process with the stages around it.

On CPU the networks run in ONNX Runtime inside Python stubs anyway, so a hop from one
stub to the next buys nothing: it costs about a millisecond of queueing and a copy of
every tensor through shared memory. The cpu profile therefore serves the design's steps
(facefuse_build.configs.CPU_USER_SIDE, CPU_TEMPLATE_SIDE) built from the same stage code
the gpu profile's separate models run:

- detect_faces: decode -> face_detector -> align (the second pass on tiles too);
- mesh_faces: face_landmarks -> face_quality;
- fuse_faces: fuse -> beautify (faces without beauty pass through) -> the poster
  (verified with the face-mesh network in-process, pasted, encoded: facefuse.server.poster,
  the code the gpu profile's postprocess runs), so the fused crops never leave the stub;
- template_bank stays its own model (it has versions of its own).

Step version N runs version N of its network (facefuse.models_admin.versions.STEP_NETWORKS),
read from the network's own version directory, so publishing, canary, promote and
rollback work on network versions exactly as on the gpu profile. Only imported in the stub.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from facefuse.models_admin.versions import STEP_NETWORKS, VERIFICATION_LANDMARKS, versions
from facefuse.onnxrt import onnx_session
from facefuse.server.adapter import array, parameters, respond_each, response, verdict_tensors
from facefuse.server.poster import finish_poster
from facefuse.stages.align import AlignParams, align_main_face
from facefuse.stages.beauty import run_where_asked
from facefuse.stages.decode import DecodeParams, decode
from facefuse.stages.face_quality import check_faces
from facefuse.stages.template_bank import TemplateBank
from facefuse.stages.verify import meshes_in_process
from facefuse.templates import TemplateStore
from facefuse.vision.face_quality import QualityLimits


class _Step:
    def initialize(self, args):
        step_dir = Path(args["model_repository"])
        self.repository = step_dir.parent
        self.params = parameters(args)
        self.threads = int(self.params.get("intra_op_threads", "1"))
        network = STEP_NETWORKS[step_dir.name]
        self.setup(onnx_session(self.repository / network / args["model_version"] / "model.onnx", self.threads))

    def setup(self, session) -> None:
        raise NotImplementedError

    def handle(self, request):
        raise NotImplementedError

    def execute(self, requests):
        return respond_each(requests, self.handle)


class DetectFaces(_Step):
    """image_bytes -> the photo's main face, gated and cut into the canonical crop."""

    def setup(self, session) -> None:
        self.detector = session
        self.decode_params = DecodeParams.from_parameters(self.params)
        self.align_params = AlignParams.from_parameters(self.params)

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.detector.run(None, {"detector_image": images}))

    def handle(self, request):
        decoded = decode(bytes(array(request, "image_bytes").reshape(-1)[0]), self.decode_params)
        raw = self.detect(decoded.detector_image[None])
        aligned = align_main_face(decoded.image, *(r[0] for r in raw), decoded.letterbox_scale, self.align_params,
                                  self.detect)
        return response(faces=aligned.faces[None], face_affines=aligned.affines[None], face_boxes=aligned.boxes[None])


class MeshFaces(_Step):
    """Aligned faces -> their meshes, refused or scored by the quality gates."""

    def setup(self, session) -> None:
        self.landmarks = session
        self.limits = QualityLimits.from_parameters(self.params)

    def handle(self, request):
        faces = array(request, "faces")
        meshes, _presence = self.landmarks.run(None, {"faces": faces})
        verdict = check_faces(faces[0], meshes[0], array(request, "face_affines")[0], self.limits)
        return response(face_meshes=meshes, **verdict_tensors("face", verdict.quality, verdict.warnings))


FUSE_INPUTS = ("user_faces", "user_meshes", "template_faces", "template_meshes", "fuse_degree", "profile_degree")
BEAUTIFY_OUTPUTS = ["beautified_faces", "beautified_masks"]


class FuseFaces(_Step):
    """The user's faces fused into the template's, beautified where asked, and the poster
    made of them: verified, pasted into the template and encoded."""

    def setup(self, session) -> None:
        self.fuser = session
        self.bank = TemplateBank(TemplateStore(Path(self.params["template_dir"])))
        # beautify has no releases of its own: the newest build serves, as on its own model
        beautify = self.repository / "beautify" / str(versions(self.repository, "beautify")[-1]) / "model.onnx"
        self.beautifier = onnx_session(beautify, self.threads)
        # The verification's face-mesh network, in-process (a BLS call cost ~2.7 ms of CPU
        # per poster): the serving release's version (facefuse.models_admin.pinning), or
        # the newest build before there are releases, as Triton's "latest" would pick.
        landmarks = self.params.get(VERIFICATION_LANDMARKS) or str(versions(self.repository, "face_landmarks")[-1])
        verifier = onnx_session(self.repository / "face_landmarks" / landmarks / "model.onnx", self.threads)
        self.find_meshes = partial(meshes_in_process, verifier)

    def handle(self, request):
        fused_faces, fused_masks = self.fuser.run(None, {name: array(request, name) for name in FUSE_INPUTS})
        feeds = {"faces": fused_faces, "face_masks": fused_masks, "face_meshes": array(request, "template_meshes"),
                 "user_meshes": array(request, "user_meshes"), "profile_degree": array(request, "profile_degree"),
                 "beauty": array(request, "beauty")}
        faces, masks = run_where_asked(feeds, BEAUTIFY_OUTPUTS, lambda f: self.beautifier.run(BEAUTIFY_OUTPUTS, f))
        return finish_poster(self.bank, self.find_meshes, request, faces[0], masks[0])
