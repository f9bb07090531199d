"""The serving stages called in sequence in one process, on the built ONNX models.

Used where Triton is not wanted: registering templates offline (the same models the
server runs analyse them), the numerics checks of the build, and the hand-rolled
baseline that `facefuse bench` measures Triton against.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from facefuse.contract import (
    DEFAULT_FUSE_DEGREE, DEFAULT_OUTPUT_QUALITY, DEFAULT_PROFILE_DEGREE, DETECTOR_INPUT_PX, MAX_FACES,
)
from facefuse.errors import FaceError
from facefuse.models_admin.releases import serving_model_path
from facefuse.onnxrt import onnx_session
from facefuse.settings import Settings, get_settings
from facefuse.stages.align import AlignedFaces, AlignParams, align_faces, align_main_face, detect
from facefuse.stages.decode import DecodedImage, DecodeParams, decode
from facefuse.stages.face_quality import check_faces
from facefuse.stages.postprocess import postprocess
from facefuse.stages.verify import meshes_in_process, refuse_failed, verify_fused_faces
from facefuse.templates import TemplateArtifact, check_template_id
from facefuse.vision.detection import check_face, faces_left_to_right
from facefuse.vision.face_quality import Assessment, QualityLimits


@dataclass(frozen=True)
class AnalyzedFaces:
    faces: np.ndarray  # (K, F, F, 3) uint8
    meshes: np.ndarray  # (K, 468, 3) float32
    affines: np.ndarray  # (K, 2, 3) float32
    boxes: np.ndarray  # (K, 5) float32
    verdict: Assessment | None = None  # the user side's quality score and warnings


class LocalPipeline:
    def __init__(self, settings: Settings | None = None, threads: int = 1, profile: str = "cpu",
                 model_paths: dict | None = None):
        """model_paths: ONNX file per network (default: the serving versions, so templates
        analysed here match what Triton serves)."""
        self.settings = settings or get_settings()
        repository = self.settings.model_repository_dir
        self.detector_px = DETECTOR_INPUT_PX[profile]
        paths = {m: serving_model_path(repository, m) for m in ("face_detector", "face_landmarks", "fuse")}
        paths.update(model_paths or {})
        missing = [m for m, path in paths.items() if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"models {missing} are not built in {repository}; run `facefuse models build`"
            )
        self.detector = onnx_session(paths["face_detector"], threads)
        self.landmarks = onnx_session(paths["face_landmarks"], threads)
        self.fuser = onnx_session(paths["fuse"], threads)
        s = self.settings
        self.decode_params = DecodeParams(self.detector_px, s.max_image_side_px, s.decode_target_side_px, s.max_image_bytes)
        self.align_params = AlignParams(
            self.detector_px, s.detector_score_threshold, s.detector_nms_iou, s.min_face_px, s.max_face_outside_fraction,
            second_pass_tiles=s.detector_second_pass_tiles,
        )
        self.quality_limits = QualityLimits(
            max_turn_deg=s.max_turn_deg, max_eyes_covered=s.max_eyes_covered,
            max_one_eye_covered=s.max_one_eye_covered, max_strands=s.max_face_strands,
            max_mouth_covered=s.max_mouth_covered,
            min_brightness=s.min_face_brightness, min_sharpness=s.min_face_sharpness,
        )
        # When a dict: CPU seconds spent in each stage, named like the Triton models
        # (the benchmark compares the two per stage).
        self.stage_cpu_s: dict[str, float] | None = None

    @contextlib.contextmanager
    def _stage(self, name: str):
        if self.stage_cpu_s is None:
            yield
            return
        start = time.process_time()
        try:
            yield
        finally:
            self.stage_cpu_s[name] = self.stage_cpu_s.get(name, 0.0) + time.process_time() - start

    # -- stages ----------------------------------------------------------------
    def decode(self, data: bytes) -> DecodedImage:
        with self._stage("decode"):
            return decode(data, self.decode_params)

    def run_detector(self, decoded: DecodedImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._stage("face_detector"):
            box_deltas, face_probs, keypoint_deltas = self.detector.run(None, {"detector_image": decoded.detector_image[None]})
        return box_deltas[0], face_probs[0], keypoint_deltas[0]

    def detect_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detector on letterboxed images (N, S, S, 3): align's second pass."""
        return tuple(self.detector.run(None, {"detector_image": images}))

    def run_landmarks(self, aligned: AlignedFaces) -> np.ndarray:
        with self._stage("face_landmarks"):
            return self.find_meshes(aligned.faces)[0]

    def find_meshes(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The face-mesh network on crops that are not the user's (the verification's look
        at the fused faces); counted as postprocess, where Triton runs it."""
        return meshes_in_process(self.landmarks, crops)

    def run_fuse(self, user_faces, user_meshes, template_faces, template_meshes, fuse_degree, profile_degree):
        feed = {
            "user_faces": user_faces[None], "user_meshes": user_meshes[None],
            "template_faces": template_faces[None], "template_meshes": template_meshes[None],
            "fuse_degree": np.array([[fuse_degree]], np.float32),
            "profile_degree": np.array([[profile_degree]], np.float32),
        }
        with self._stage("fuse"):
            fused_faces, fused_masks = self.fuser.run(None, feed)
        return fused_faces[0], fused_masks[0]

    # -- the ensembles' work ---------------------------------------------------------
    def analyze_user(self, data: bytes) -> AnalyzedFaces:
        """face_analyze: the photo's main face, gated, aligned, meshed and judged."""
        decoded = self.decode(data)
        raw = self.run_detector(decoded)
        with self._stage("align"):
            aligned = align_main_face(decoded.image, *raw, decoded.letterbox_scale, self.align_params, self.detect_batch)
        meshes = self.run_landmarks(aligned)
        with self._stage("face_quality"):
            verdict = check_faces(aligned.faces, meshes, aligned.affines, self.quality_limits)
        return AnalyzedFaces(aligned.faces, meshes, aligned.affines, aligned.boxes, verdict)

    def fuse(
        self, user: AnalyzedFaces, template: TemplateArtifact, face_indices=(0,),
        fuse_degree: float = DEFAULT_FUSE_DEGREE, profile_degree: float = DEFAULT_PROFILE_DEGREE, add_label: bool = True,
        output_format: str = "jpeg", output_quality: int = DEFAULT_OUTPUT_QUALITY,
    ) -> bytes:
        """face_fuse: user faces into the template's faces, encoded poster."""
        with self._stage("template_bank"):
            faces, meshes, affines = template.select(np.asarray(face_indices))
        fused_faces, fused_masks = self.run_fuse(user.faces, user.meshes, faces, meshes, fuse_degree, profile_degree)
        with self._stage("postprocess"):
            refuse_failed(verify_fused_faces(fused_faces, faces, meshes, user.faces, user.meshes, profile_degree,
                                             self.find_meshes))
            return postprocess(template.image, fused_faces, fused_masks, affines, add_label, output_format, output_quality,
                               details=template.paste_details(affines, fused_faces.shape[1]))

    def analyze_template(self, template_id: str, data: bytes, face_index: int | None = None, source: str = "") -> TemplateArtifact:
        """Every usable face of a template image (up to MAX_FACES, numbered left to right)."""
        check_template_id(template_id)
        # Posters keep their full resolution: no reduced-scale JPEG decoding.
        decoded = decode(data, replace(self.decode_params, decode_target_side_px=0))
        detections = detect(*self.run_detector(decoded), decoded.letterbox_scale, self.align_params)
        usable = []
        for det in faces_left_to_right(detections, MAX_FACES):
            try:
                check_face(det, decoded.image.shape, self.align_params.min_face_px, self.align_params.max_face_outside_fraction)
                usable.append(det)
            except FaceError:
                continue
        if not usable:
            raise FaceError(f"template image {template_id!r} holds no usable face (none found, too small or cut off)")
        if face_index is not None:
            if not 0 <= face_index < len(usable):
                raise FaceError(f"template image has faces 0..{len(usable) - 1} (left to right); --face {face_index} is out of range")
            usable = [usable[face_index]]
        aligned = align_faces(decoded.image, usable, cv2.INTER_CUBIC)
        return TemplateArtifact(
            template_id=template_id, version=0, image=decoded.image, faces=aligned.faces,
            meshes=self.run_landmarks(aligned), affines=aligned.affines, boxes=aligned.boxes, source=source,
        )
