"""Five-point similarity alignment into the canonical face crop every model reads."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facefuse.contract import FACE_CROP_PX, WORKING_CROP_PX
from facefuse.errors import FaceError

# ArcFace's 112x112 reference points (eyes, nose tip, mouth corners), re-centred and
# scaled so the eye distance is a quarter of the crop: the crop then holds the whole
# face mesh (forehead to chin) with margin for the blend's feathering.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# A working size may hold a face up to this much smaller than it is in the image (320
# for a face that needs 325 px): a few percent of resolution is not visible, a size step is.
WORKING_SIZE_SLACK = 0.03
_EYE_DISTANCE_UNITS = 0.25
_EYE_LINE_Y_UNITS = 0.38
# Where the crop reaches past the photo's edge (fill_outside), in crop pixels at 384: the
# fill eases in from the edge over the first, and where the face's mirror image is
# outside too, the crop is blurred by the second.
OUTSIDE_FEATHER_PX = 3.0
OUTSIDE_BLUR_PX = 12.0
CANONICAL_KEYPOINTS = np.column_stack(
    [
        0.5 + (_ARCFACE_112[:, 0] - 56.0) / 35.24 * _EYE_DISTANCE_UNITS,
        _EYE_LINE_Y_UNITS + (_ARCFACE_112[:, 1] - 51.6) / 35.24 * _EYE_DISTANCE_UNITS,
    ]
)


def crop_affine(keypoints: np.ndarray, crop_px: int) -> np.ndarray:
    """The 2x3 similarity mapping image pixels to crop pixels (least median of squares,
    so one badly placed keypoint, e.g. a covered mouth corner, does not skew the crop)."""
    target = CANONICAL_KEYPOINTS * crop_px
    affine, _ = cv2.estimateAffinePartial2D(
        keypoints.astype(np.float64), target, method=cv2.LMEDS
    )
    if affine is None:
        raise FaceError("the face keypoints are degenerate (the face cannot be aligned)")
    return affine.astype(np.float32)


def warp_to_crop(rgb: np.ndarray, affine: np.ndarray, crop_px: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut the aligned face crop out of the image; past the image's edge, filled from
    the face (`fill_outside`).

    Templates are cut bicubic (once, offline): their crop is resampled again on its way
    back into the poster, and two bilinear passes keep only about half of a face's fine
    detail (0.44-0.60 of the Laplacian energy on the sample templates; 0.9-1.0 with
    bicubic both ways). User photos per request stay bilinear: OpenCV's bicubic warp
    costs 5x as much (about 5 ms), and a selfie's crop is mostly enlarged anyway."""
    inside = inside_image(rgb.shape, affine, crop_px)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    if scale < 0.5:
        # Shrinking by more than 2x aliases with bilinear sampling: blur the source
        # first, only the part of it the crop covers.
        sigma = 0.3 / scale
        pad = int(np.ceil(3 * sigma)) + 2
        corners = np.array([[0, 0], [crop_px, 0], [0, crop_px], [crop_px, crop_px]], np.float32)
        inverse = invert_affine(affine)
        in_image = corners @ inverse[:, :2].T + inverse[:, 2]
        height, width = rgb.shape[:2]
        x0, y0 = np.maximum(np.floor(in_image.min(axis=0)).astype(int) - pad, 0)
        x1 = min(int(np.ceil(in_image[:, 0].max())) + pad, width)
        y1 = min(int(np.ceil(in_image[:, 1].max())) + pad, height)
        if x1 > x0 and y1 > y0:
            rgb = cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), sigma)
            affine = affine.copy()
            affine[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float32)
    crop = cv2.warpAffine(rgb, affine, (crop_px, crop_px), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    return crop if inside is None else fill_outside(crop, inside)


def inside_image(shape: tuple[int, ...], affine: np.ndarray, crop_px: int) -> np.ndarray | None:
    """Which pixels of the crop come from inside an image of `shape` (bool, crop_px
    square); None when all of them do (the usual case, checked on the corners)."""
    height, width = shape[:2]
    inverse = invert_affine(affine)
    corners = np.array([[0, 0], [crop_px - 1, 0], [0, crop_px - 1], [crop_px - 1, crop_px - 1]], np.float32)
    in_image = corners @ inverse[:, :2].T + inverse[:, 2]
    limits = np.array([width - 0.5, height - 0.5])
    if (in_image >= -0.5).all() and (in_image <= limits).all():
        return None
    steps = np.arange(crop_px, dtype=np.float32)
    x = np.add.outer(steps * inverse[0, 1], steps * inverse[0, 0]) + inverse[0, 2]  # [row, column]
    y = np.add.outer(steps * inverse[1, 1], steps * inverse[1, 0]) + inverse[1, 2]
    return (x >= -0.5) & (x <= limits[0]) & (y >= -0.5) & (y <= limits[1])


def fill_outside(crop: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The crop with what lies past the photo's edge filled from the face.

    A selfie cut out of a group photo often loses a cheek, an ear or the top of the
    forehead to the frame; the replicated edge pixels (a flag's stripes, streaks of
    wrinkles and hair) would be fused into the template's face, and no skin test tells
    them from skin. The crop is aligned so the face is symmetric about its vertical
    centre line: a pixel whose mirror image lies inside the photo takes it (the same
    part of the face on the other side). Elsewhere (a forehead cut by the top edge) the
    crop is heavily blurred there: a smooth continuation of the edge's colour, which
    `fuse` uses as skin where it is skin-coloured and turns down where it is hair."""
    outside = ~inside
    size = crop.shape[0]
    scale = size / FACE_CROP_PX
    # The blur at a quarter of the size (it is smooth; 10x cheaper than at full size).
    small = cv2.resize(crop, (size // 4, size // 4), interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(cv2.GaussianBlur(small, (0, 0), OUTSIDE_BLUR_PX * scale / 4), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    fill = cv2.copyTo(cv2.flip(crop, 1), (outside & inside[:, ::-1]).astype(np.uint8), smooth)
    # 1 well past the edge, easing in from the edge's replicated pixels.
    weight = cv2.GaussianBlur(outside.astype(np.float32), (0, 0), OUTSIDE_FEATHER_PX * scale) * outside
    return cv2.blendLinear(fill, crop, weight, 1.0 - weight)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(affine.astype(np.float64)).astype(np.float32)


def working_crop_px(affines: np.ndarray, sizes: tuple[int, ...] = WORKING_CROP_PX) -> int:
    """The smallest working size whose crop holds every given face at no less than its
    size in the image (affines: image -> FACE_CROP_PX crop), so pasting back never enlarges."""
    scale = np.sqrt(np.abs(np.linalg.det(np.asarray(affines, np.float64)[:, :, :2])))
    needed = FACE_CROP_PX / max(float(scale.min()), 1e-6)
    return next((size for size in sorted(sizes) if size >= needed * (1 - WORKING_SIZE_SLACK)), max(sizes))


def scale_crops(faces: np.ndarray, meshes: np.ndarray, affines: np.ndarray, size: int):
    """Crops cut at FACE_CROP_PX brought down to `size` (never enlarged): pixels by area
    averaging, mesh points and image -> crop affines by the same factor (scale_geometry)."""
    if size >= faces.shape[1]:
        return faces, meshes, affines
    meshes, affines = scale_geometry(meshes, affines, size / faces.shape[1])
    faces = np.stack([cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA) for face in faces])
    return faces, meshes, affines


def scale_meshes(meshes: np.ndarray, factor: float) -> np.ndarray:
    """Crop mesh points for a crop `factor` times the size, scaled about pixel centres
    (crop' = (crop + 0.5) * factor - 0.5); depth scales too."""
    meshes = np.array(meshes, np.float32)
    meshes[..., :2] = (meshes[..., :2] + 0.5) * factor - 0.5
    meshes[..., 2] *= factor
    return meshes


def scale_geometry(meshes: np.ndarray, affines: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Crop mesh points and image -> crop affines for a crop `factor` times the size
    (scale_meshes; the affines about pixel centres too)."""
    meshes = scale_meshes(meshes, factor)
    affines = np.array(affines, np.float32) * factor
    affines[..., :, 2] += 0.5 * factor - 0.5
    return meshes, affines


@dataclass(frozen=True)
class FaceRoi:
    """Where a crop lands in the poster: the box it covers and the poster -> crop affine
    shifted to the box's origin."""

    x0: int
    y0: int
    x1: int
    y1: int
    to_crop: np.ndarray  # (2, 3) float64

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0


def face_roi(shape: tuple[int, ...], affine: np.ndarray, crop_px: int) -> FaceRoi | None:
    """The part of an image of `shape` a crop_px crop covers (None if it is all outside)."""
    height, width = shape[:2]
    corners = np.array([[0, 0], [crop_px, 0], [0, crop_px], [crop_px, crop_px]], np.float32)
    inverse = invert_affine(affine)
    in_image = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(in_image.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(in_image[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(in_image[:, 1].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    # Crop -> template ROI: the template->crop affine, shifted to the ROI origin.
    to_crop = affine.astype(np.float64).copy()
    to_crop[:, 2] += to_crop[:, :2] @ np.array([x0, y0], np.float64)
    return FaceRoi(int(x0), int(y0), x1, y1, to_crop)
