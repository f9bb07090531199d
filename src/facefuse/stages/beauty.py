"""The Beautify call's own stages: which faces of a photo to adjust, and the photo put back together.

`beautify` itself (the effects) is a network stage shared with fusion; see
facefuse_build.beauty_program.
"""

from __future__ import annotations

import numpy as np

from facefuse.contract import FACE_CROP_PX, MAX_FACES
from facefuse.errors import FaceError, OptionError
from facefuse.stages.align import AlignedFaces, AlignParams, DetectBatch, align_faces, detect, detect_in_tiles
from facefuse.vision.codec import encode_image
from facefuse.vision.compositing import draw_label, paste_faces
from facefuse.vision.detection import check_face, choose_main_face, faces_left_to_right

ALL_FACES = -1
# beautify's outputs and the inputs they are when a request asks for no beauty.
PASS_THROUGH = {"beautified_faces": "faces", "beautified_masks": "face_masks"}


def beauty_faces(
    image: np.ndarray, box_deltas: np.ndarray, face_probs: np.ndarray, keypoint_deltas: np.ndarray,
    letterbox_scale: float, face_index: int, params: AlignParams, detect_batch: DetectBatch | None = None,
) -> AlignedFaces:
    """The photo's usable faces (up to MAX_FACES, numbered left to right), or only face
    `face_index` of them; aligned into the canonical crop. Faces too small or cut off by
    the border are left alone; when none is usable the main face's refusal is raised.
    detect_batch: the detector, for align's second pass on tiles when the first finds nothing."""
    detections = detect(box_deltas, face_probs, keypoint_deltas, letterbox_scale, params)
    if not detections and detect_batch is not None:
        detections = detect_in_tiles(image, params, detect_batch)
    usable = []
    for detection in faces_left_to_right(detections, MAX_FACES):
        try:
            check_face(detection, image.shape, params.min_face_px, params.max_face_outside_fraction)
            usable.append(detection)
        except FaceError:
            continue
    if not usable:
        check_face(choose_main_face(detections, image.shape), image.shape, params.min_face_px,
                   params.max_face_outside_fraction)
        raise FaceError("no face in the photo is large enough and whole; send a closer photo")
    if face_index != ALL_FACES:
        if not 0 <= face_index < len(usable):
            raise OptionError(f"face_index {face_index} does not exist: the photo has faces 0..{len(usable) - 1} "
                              "(numbered left to right); send -1 or leave it out for all faces")
        usable = [usable[face_index]]
    return align_faces(image, usable)


def no_changes(count: int) -> np.ndarray:
    """(K, F, F) uint8 zeros: the masks of faces nothing has changed yet."""
    return np.zeros((count, FACE_CROP_PX, FACE_CROP_PX), np.uint8)


def beauty_paste(
    image: np.ndarray, faces: np.ndarray, masks: np.ndarray, affines: np.ndarray, add_label: bool,
    output_format: str, output_quality: int,
) -> bytes:
    """The adjusted crops pasted back into the photo through their masks (outside them the
    photo's pixels stay exactly), the AI label, encoded. The photo's own detail is kept:
    nothing of a template's is matched in."""
    photo = paste_faces(image, faces, masks, affines, match_detail=False)
    if add_label:
        photo = draw_label(photo)
    return encode_image(photo, output_format, output_quality)


def run_where_asked(feeds: dict[str, np.ndarray], output_names: list[str], run) -> list[np.ndarray]:
    """run(feeds) on the batch rows whose `beauty` is not all 0; the other rows' outputs
    are their inputs (the program is the identity there)."""
    asked = np.any(feeds["beauty"] != 0, axis=1)
    if asked.all():
        return run(feeds)
    outputs = [feeds[PASS_THROUGH[name]].copy() for name in output_names]
    if asked.any():
        rows = np.nonzero(asked)[0]
        for out, part in zip(outputs, run({k: v[rows] for k, v in feeds.items()})):
            out[rows] = part
    return outputs
