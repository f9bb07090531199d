"""fuse: the face-fusion tensor program, authored in PyTorch and exported to ONNX.

No learned face-swap weights ship in any package, so fusion is geometry and colour
done with tensors. For each (user face, template face) pair, both aligned into the same
canonical crop by `align` and each with its 468-point mesh (x, y in crop pixels, z in
the same scale, smaller z nearer the camera):

1. shape: the user's 3D mesh is rotated and scaled into the template face's pose
   (a least-squares rotation, so a turned user face is turned back, never projected
   flat); the target geometry is the template mesh moved toward it by `profile_degree`;
2. warp: an exact piecewise-affine warp over the mesh's triangulation (plus a ring of
   triangles around the face oval that fades the warp out), rasterised with a depth
   test on a 4x coarser grid and interpolated (a piecewise-affine map is continuous, so
   that is exact inside every triangle up to a sub-pixel error at the edges). Every
   pixel of the target comes from one place in each face: nothing is smoothed or
   averaged, so features never double or smear;
3. what of the user may be used: the face oval (forehead kept below the hairline), only
   where the user's own mesh faces the camera (skin a head turned past about 15 degrees
   hides is taken from its mirror image on the near side, by the mesh's left/right
   pairing; the eyes and lips never, and what neither side shows from the template),
   and only skin-coloured pixels outside the eyes, brows
   and mouth (hair strands, hands and objects over cheeks and forehead stay out), but
   dark ones around the mouth and chin (a beard is the user's), and not shine (specular
   highlights, brighter than the skin around them by more than shading makes skin),
   which is also left out of the colour statistics and lighting below;
4. colour: the user's face takes the template face's colour statistics (mean and spread
   of luma, and of chroma per unit of luma, the latter's spread narrowed but never
   widened, over the visible skin) and the template's low-frequency light and colour,
   read off the skin only, never the eyes, brows or mouth (so a coloured cast on the
   user's photo goes, from the eyes too, and the template's lighting comes, not the
   glare of its teeth or eye whites); where the photo's skin colour is natural rather
   than the light's, grey and black stay grey and black (a dark-skinned face's brows
   and lips are not moved toward blue);
5. appearance: template and colour-matched user face are mixed by `fuse_degree`, the
   smooth base linearly and the fine detail on a steeper curve (never two sets of
   features at half strength), the user's detail sharpened toward the template's
   detail energy (never softened);
6. blend: a feathered alpha of (3) over the warped template; where the skin test turned
   down a small patch of the user's visible face (eye make-up, a strand, shine), over
   the surrounding fused skin instead, mixed with the template as the face is (its
   detail by the detail curve): the template's own pixels there may be its glasses or
   eyes, which would show through as a second set of features.

All of it runs at the template's working size (the template side's crops come at the
smallest of contract.WORKING_CROP_PX that shows its face as large as the poster does;
the user's crop is scaled to it here). The finest detail is matched to the template
face's where it is seen, at the poster's resolution, when the crop is pasted back
(facefuse.vision.detail.match_template_detail).

Outputs are the fused crop and an alpha mask covering everything the program changed;
outside the alpha the poster is the template, bit for bit.

A learned swapper with the same inputs and outputs can replace this as a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from facefuse.contract import FACE_CROP_PX, MESH_POINTS, WORKING_CROP_PX
from facefuse.vision.face_quality import CHEEK_LEFT, CHEEK_RIGHT
from facefuse_build.export import batch_and_faces_axes, onnx_from_module

INPUT_NAMES = ("user_faces", "user_meshes", "template_faces", "template_meshes", "fuse_degree", "profile_degree")
OUTPUT_NAMES = ("fused_faces", "fused_masks")
# ScatterElements with a max reduction (the depth test) needs opset 18.
FUSE_OPSET = 18

# MediaPipe face-mesh face oval, clockwise from the top of the forehead (index 10).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Oval points on the upper forehead: pulled further in, so fringes and hairlines of
# the template stay the template's.
FOREHEAD = frozenset({10, 338, 297, 332, 284, 54, 103, 67, 109})
NOSE_TIP = 4
# Eyes, eyebrows and lips (MediaPipe indices): features, never tested for skin colour.
EYE_POINTS = frozenset({
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
})
LIP_POINTS = frozenset({
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
})
BROW_POINTS = frozenset({46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336})
FEATURE_POINTS = EYE_POINTS | LIP_POINTS | BROW_POINTS
# A brow's triangles reach up into the forehead: those whose centre lies above the brow
# points they touch (by this much, in the canonical crop's pixels) are not the brow. They
# were never tested, and a hat's brim there was fused as a grey band across the forehead.
# Tested as skin, a furrowed brow's dark creases were turned down (a pale smudge over
# the brows): there only what is much darker than the skin is (a brim, a fringe).
BROW_ABOVE_PX = 0.5
BROW_DARK_FROM, BROW_DARK_TO = 0.40, 0.25
# The warp fades out over a ring of triangles between the face oval and the oval scaled
# by this much about its centre: outside that ring the template is not moved.
RING_SCALE = 1.3
# The warp is rasterised on a grid this many times coarser than the crop (it is also
# the resolution of masks, colour statistics and lighting: they are smooth).
GRID_STRIDE = 4
# Rasterisation windows: a triangle is tested against the grid cells of a KxK window
# from its bounding box's corner; K covers this many times its canonical size.
WINDOW_MARGIN = 2.0
WINDOW_SIZES = (6, 10, 16, 24, 36)
# Depth-test key: priority * TRIANGLE_SLOTS + triangle index, exact in float32.
TRIANGLE_SLOTS = 2048
DEPTH_LEVELS = 4000
# Visibility: the user's texture for a triangle is used where it faces the camera at
# least this fraction as much as it does in the target (foreshortening by a head turn).
VISIBLE_FROM, VISIBLE_TO = 0.35, 0.65
# A head turned past about 15 degrees hides part of the far side: there the skin is taken
# from the near side's mirror image (the mesh's own left/right pairing) instead of from
# the template, which gave two-tone, ghosted half-faces (and the template's glasses and
# brow beside the user's). Never for the eyes (a mirrored iris looks sideways) or the
# lips (a smile's teeth doubled), never at the oval's edge (hair would mirror across the
# face); the template's lighting is laid over it as over the rest (step 4).
# Mild turns keep their own texture: mirroring softened and paled them.
MIRROR_FROM_YAW_DEG, MIRROR_TO_YAW_DEG = 10.0, 20.0
# Skin test (in YCbCr, 0..1): chroma distance from the user's skin in spreads, and luma
# below this fraction of the skin's (hair, dark objects, sunglasses).
SKIN_CHROMA_FROM, SKIN_CHROMA_TO = 3.0, 5.0
SKIN_CHROMA_MIN_SPREAD = 0.015
SKIN_DARK_FROM, SKIN_DARK_TO = 0.55, 0.40
# The beard zone: below the nose tip by this share of the way to the chin, and within
# this share of the face's half-width of its centre line (mouth, chin and the beard
# around them; not the jaw's sides, where hair falls). Dark there is the user's beard,
# kept; only what is off the skin's colour and not dark (a cup) is turned down.
BEARD_BELOW_NOSE, BEARD_HALF_WIDTH = 0.25, 0.5
# Shine: a specular highlight is brighter than the smooth skin luma around it by more
# than shading makes skin (turned down from SHINE_FROM of it, fully at SHINE_TO). It is
# taken from the surrounding skin, as a stain is, and kept out of the colour statistics
# and the lighting estimate (it made a stark white patch with a dark halo).
SHINE_FROM, SHINE_TO = 0.15, 0.30
# Colour is matched as chroma over luma plus this (0..1 luma): near black, chroma is
# noise, and dividing by the luma alone would make colour of it.
CHROMA_LUMA_FLOOR = 0.1
# A photo's skin colour differs from the template's for two reasons: coloured light (a
# club's cyan, a blue screen's spill), which moves every pixel alike and is taken off all
# of them; or the person's own skin (darker, warmer), where grey and black are still grey
# and black. Moved alike, the black brows and dark lips of a dark-skinned face went
# blue-grey on a paler template (`bluish brows`, `grey lips` on every Obama poster). So
# where the skin's colour is natural (its hue within about 15 degrees of the template
# skin's, cosine over NATURAL_HUE_TO, and at least about as saturated), a pixel takes
# the skin's move only as far as it has the skin's colour. Under coloured light the
# skin's hue is off (the cyan club: 180 degrees) or it is washed out (blue light:
# under 0.8 of the template's saturation), and everything moves alike, as before.
NATURAL_HUE_FROM, NATURAL_HUE_TO = 0.85, 0.97
NATURAL_SATURATION_FROM, NATURAL_SATURATION_TO = 0.8, 1.1
# Appearance: fine detail is what is lost by an 8x low-pass; it switches from the
# template's to the user's between fuse degrees 25 and 65.
DETAIL_SCALE = 8
DETAIL_MIX_START, DETAIL_MIX_WIDTH = 0.25, 0.40
# The user's detail is sharpened toward the template's detail energy, by at most this
# much; never softened: a template face smaller than the crop is enlarged into it and
# looks soft there, though it is sharp in the poster (softening to it blurred the
# fused face: sharpness 0.11 of the template's on the astronaut poster, 0.32 without).
MIN_DETAIL_GAIN, MAX_DETAIL_GAIN = 1.0, 2.0
# Patches the skin test turns down are filled from the usable face within this many grid
# cells (normalised convolution); fully where at least this share of them is usable,
# so a large patch (a beard's sides along the jaw) still takes the template's skin.
FILL_WINDOW_CELLS = 9
FILL_FULL_COVERAGE = 0.35
# The mask's signed distance is smoother still: an 8x smaller grid.
DISTANCE_DOWNSCALE = 8
ROTATION_ITERATIONS = 18


@dataclass(frozen=True)
class MeshTopology:
    """The triangulation the warp runs over, made once from a frontal canonical mesh.

    Vertices are the 468 mesh points followed by one ring point per face-oval point.
    """

    triangles: np.ndarray  # (T, 3) int64, counter-clockwise in image coordinates
    ring: np.ndarray  # (T,) bool: has a ring vertex (outside the face)
    feature: np.ndarray  # (T,) bool: touches an eye, brow or lip point (not from above a brow)
    eye_or_lip: np.ndarray  # (T,) bool: touches an eye or lip point (never mirrored)
    above_brow: np.ndarray  # (T,) bool: touches a brow point from the forehead above it
    beard: np.ndarray  # (T,) bool: its centre lies in the beard zone
    groups: tuple[tuple[np.ndarray, int], ...]  # (triangle indices, window cells)
    mirror: np.ndarray  # (V,) int64: each vertex's left/right partner (itself without a pairing)


def ring_points(mesh_xy: np.ndarray | torch.Tensor, scale: float = RING_SCALE):
    oval = mesh_xy[..., list(FACE_OVAL), :]
    centre = oval.mean(-2, keepdims=True) if isinstance(oval, np.ndarray) else oval.mean(-2, keepdim=True)
    return centre + (oval - centre) * scale


def mesh_topology(canonical_xy: np.ndarray, mirror_index: list[int] | None = None) -> MeshTopology:
    """Delaunay triangulation of a frontal mesh and its ring, grouped by size for
    rasterising; mirror_index: the mesh points' left/right pairing (mirror_index_from_meshes)."""
    from scipy.spatial import Delaunay

    points = np.concatenate([canonical_xy[:, :2], ring_points(canonical_xy[:, :2])]).astype(np.float64)
    triangles = Delaunay(points).simplices.astype(np.int64)
    corners = points[triangles]
    signed = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    triangles = np.where((signed < 0)[:, None], triangles[:, [0, 2, 1]], triangles)
    triangles = triangles[np.abs(signed) > 1e-6]
    if len(triangles) >= TRIANGLE_SLOTS:
        raise ValueError(f"{len(triangles)} triangles; the depth key holds at most {TRIANGLE_SLOTS}")
    ring = (triangles >= MESH_POINTS).any(1)
    # Only a brow's triangles at or below its points are the brow (see BROW_ABOVE_PX).
    on_brow = np.isin(triangles, list(BROW_POINTS))
    brow_y = (points[triangles][..., 1] * on_brow).sum(1) / np.maximum(on_brow.sum(1), 1)
    above_brow = on_brow.any(1) & (points[triangles][..., 1].mean(1) < brow_y - BROW_ABOVE_PX)
    feature = np.isin(triangles, list(FEATURE_POINTS)).any(1) & ~above_brow
    eye_or_lip = np.isin(triangles, list(EYE_POINTS | LIP_POINTS)).any(1)
    beard = beard_zone(points[triangles].mean(1), canonical_xy[:, :2]) & ~ring
    extent = (points[triangles].max(1) - points[triangles].min(1)).max(1)
    need = np.ceil(extent * WINDOW_MARGIN / GRID_STRIDE).astype(int) + 1
    groups, taken = [], np.zeros(len(triangles), bool)
    for size in WINDOW_SIZES:
        members = np.nonzero(~taken & (need <= size))[0]
        if len(members):
            groups.append((members, size))
            taken[members] = True
    if not taken.all():
        groups.append((np.nonzero(~taken)[0], int(need[~taken].max())))
    pairs = np.arange(MESH_POINTS) if mirror_index is None else np.asarray(mirror_index, np.int64)
    oval_position = {point: k for k, point in enumerate(FACE_OVAL)}
    ring_pairs = [MESH_POINTS + oval_position.get(int(pairs[point]), k) for k, point in enumerate(FACE_OVAL)]
    mirror = np.concatenate([pairs, np.asarray(ring_pairs, np.int64)])
    return MeshTopology(triangles, ring, feature, eye_or_lip, above_brow, beard, tuple(groups), mirror)


def beard_zone(xy: np.ndarray, mesh_xy: np.ndarray) -> np.ndarray:
    """Which of the points xy lie in the beard zone of the face mesh_xy."""
    oval = mesh_xy[list(FACE_OVAL)]
    nose, chin_y = mesh_xy[NOSE_TIP], oval[:, 1].max()
    half_width = (oval[:, 0].max() - oval[:, 0].min()) / 2
    below = xy[:, 1] > nose[1] + BEARD_BELOW_NOSE * (chin_y - nose[1])
    return below & (np.abs(xy[:, 0] - nose[0]) < BEARD_HALF_WIDTH * half_width)


def signed_distance(p: torch.Tensor, polygon: torch.Tensor, cells: int) -> torch.Tensor:
    """(N, 1, cells, cells): from grid points p (1, cells*cells, 2) to each closed polygon
    (N, E, 2), positive inside. Shared with the beauty program's masks."""
    n = polygon.shape[0]
    px, py = p[..., 0:1], p[..., 1:2]  # (1, P, 1)
    following = torch.roll(polygon, -1, dims=1)
    ax, ay = polygon[..., 0].unsqueeze(1), polygon[..., 1].unsqueeze(1)  # (N, 1, E)
    bx, by = following[..., 0].unsqueeze(1), following[..., 1].unsqueeze(1)
    abx, aby = bx - ax, by - ay
    t = (((px - ax) * abx + (py - ay) * aby) / (abx * abx + aby * aby).clamp_min(1e-6)).clamp(0, 1)  # (N, P, E)
    dx, dy = px - (ax + t * abx), py - (ay + t * aby)
    dist = torch.sqrt(dx * dx + dy * dy + 1e-6).amin(-1)
    # Crossing number of a ray toward +x decides inside/outside.
    straddles = (ay > py) != (by > py)
    rise = torch.where(aby == 0, torch.full_like(aby, 1e-6), aby)
    crosses = straddles & (px < ax + (py - ay) * abx / rise)
    inside = crosses.to(torch.float32).sum(-1).remainder(2.0)
    return (dist * (inside * 2 - 1)).view(n, 1, cells, cells)


class FuseProgram(torch.nn.Module):
    def __init__(
        self,
        topology: MeshTopology,
        crop_px: int = FACE_CROP_PX,
        oval_shrink: float = 0.93,
        forehead_shrink: float = 0.80,
        feather: float = 0.04,
        lighting_blur: int = 48,
        max_spread_ratio: float = 1.6,
        detail_compensation: float = 1.0,
    ):
        super().__init__()
        # The user's crop size, and the largest working size: the template side may come
        # smaller (see facefuse.vision.alignment.working_crop_px) and the program then runs at its size.
        self.crop_px = crop_px
        self.feather = feather
        self.lighting_blur = lighting_blur
        self.max_spread_ratio = max_spread_ratio
        self.detail_compensation = detail_compensation
        self.register_buffer("triangles", torch.from_numpy(topology.triangles), persistent=False)
        self.register_buffer("ring_triangle", torch.from_numpy(topology.ring).float(), persistent=False)
        self.register_buffer("feature_triangle", torch.from_numpy(topology.feature).float(), persistent=False)
        self.register_buffer("eye_or_lip_triangle", torch.from_numpy(topology.eye_or_lip).float(), persistent=False)
        self.register_buffer("above_brow_triangle", torch.from_numpy(topology.above_brow).float(), persistent=False)
        self.register_buffer("beard_triangle", torch.from_numpy(topology.beard).float(), persistent=False)
        self.register_buffer("mirror_vertex", torch.from_numpy(topology.mirror), persistent=False)
        self.groups = []
        for index, (members, size) in enumerate(topology.groups):
            self.register_buffer(f"group_{index}", torch.from_numpy(members.astype(np.int64)), persistent=False)
            # Cell offsets of a KxK window, x and y apart: (1, 1, K*K) each.
            oy, ox = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            self.register_buffer(f"window_x_{index}", ox.reshape(1, 1, -1).float(), persistent=False)
            self.register_buffer(f"window_y_{index}", oy.reshape(1, 1, -1).float(), persistent=False)
            self.groups.append(index)
        vertex_inside = torch.cat([torch.ones(MESH_POINTS), torch.zeros(len(FACE_OVAL))])
        self.register_buffer("vertex_inside", vertex_inside.view(1, -1, 1), persistent=False)
        shrink = [forehead_shrink if i in FOREHEAD else oval_shrink for i in FACE_OVAL]
        self.register_buffer("oval_index", torch.tensor(FACE_OVAL, dtype=torch.long), persistent=False)
        self.register_buffer("oval_shrink", torch.tensor(shrink).view(1, -1, 1), persistent=False)
        # Point grids at the largest size; a smaller working size uses their top-left corner.
        self.register_buffer("mask_points", self.cell_centres(crop_px // DISTANCE_DOWNSCALE, DISTANCE_DOWNSCALE), persistent=False)
        # Grid points sit at the centres of GRID_STRIDE-pixel cells, where bilinear
        # upsampling (align_corners=False) reproduces them exactly.
        self.register_buffer("grid_points", self.cell_centres(crop_px // GRID_STRIDE, GRID_STRIDE), persistent=False)
        full = torch.arange(crop_px, dtype=torch.float32)
        self.register_buffer("pixel_index", full, persistent=False)
        iy, ix = torch.meshgrid(full, full, indexing="ij")
        self.register_buffer("identity_grid", torch.stack([ix, iy]).view(1, 2, crop_px, crop_px), persistent=False)
        # Full-range BT.601 YCbCr, as JPEG uses: linear, so the colour transfer is cheap.
        rgb_to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
        self.register_buffer("rgb_to_ycc", rgb_to_ycc, persistent=False)
        self.register_buffer("ycc_to_rgb", torch.linalg.inv(rgb_to_ycc), persistent=False)

    @staticmethod
    def cell_centres(cells: int, stride: int) -> torch.Tensor:
        """(1, cells, cells, 2) x, y of the centres of stride-pixel cells."""
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride - 0.5
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        return torch.stack([cx, cy], -1).unsqueeze(0)

    @staticmethod
    def first_cells(points: torch.Tensor, cells) -> torch.Tensor:
        """The top-left cells x cells of a (1, C, C, 2) point grid, flattened to (1, cells^2, 2)."""
        return points[:, :cells, :cells].reshape(1, -1, 2)

    def border_window(self, size) -> torch.Tensor:
        """(1, 1, size, size): 1 inside, falling to 0 over the crop's outer 4%."""
        full = self.pixel_index[:size]
        edge = torch.clamp(torch.minimum(full, size - 1 - full) / (0.04 * size), 0, 1)
        return (edge.unsqueeze(1) * edge.unsqueeze(0)).unsqueeze(0).unsqueeze(0)

    # ---- geometry -------------------------------------------------------------
    @staticmethod
    def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Least-squares 2D similarity src -> dst per face: (rotation-scale 2x2, src mean, dst mean)."""
        src_mean = src.mean(1, keepdim=True)
        dst_mean = dst.mean(1, keepdim=True)
        s, d = src - src_mean, dst - dst_mean
        norm = (s * s).sum((1, 2)).clamp_min(1e-6)
        a = (s * d).sum((1, 2)) / norm
        b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / norm
        rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
        return rot, src_mean, dst_mean

    @staticmethod
    def apply_similarity(points: torch.Tensor, fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        rot, src_mean, dst_mean = fit
        return torch.matmul(points - src_mean, rot.transpose(1, 2)) + dst_mean

    @staticmethod
    def pose_onto(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """src meshes (N, P, 3) rotated, scaled and moved onto dst by least squares (3D).

        The rotation is the polar factor of the cross-covariance, by Newton-Schulz
        iteration (matrix products only: ONNX has no SVD).
        """
        src_mean, dst_mean = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
        s, d = src - src_mean, dst - dst_mean
        cov = torch.matmul(d.transpose(1, 2), s)  # (N, 3, 3): sum d s^T
        x = cov / torch.sqrt((cov * cov).sum((1, 2), keepdim=True)).clamp_min(1e-6)
        for _ in range(ROTATION_ITERATIONS):
            x = 1.5 * x - 0.5 * torch.matmul(torch.matmul(x, x.transpose(1, 2)), x)
        rotated = torch.matmul(s, x.transpose(1, 2))
        scale = (rotated * d).sum((1, 2), keepdim=True) / (s * s).sum((1, 2), keepdim=True).clamp_min(1e-6)
        return rotated * scale + dst_mean

    def corners(self, vertices: torch.Tensor) -> torch.Tensor:
        """(N, V, C) vertex values -> (N, T, 3, C) at each triangle's corners."""
        n, c = vertices.shape[0], vertices.shape[-1]
        flat = self.triangles.reshape(-1)
        return vertices.index_select(1, flat).reshape(n, -1, 3, c)

    @staticmethod
    def barycentric_planes(tri: torch.Tensor) -> torch.Tensor:
        """Triangles (..., 3, 2) -> (..., 3, 3): for each barycentric weight j, (cx, cy, c)
        with weight_j(x, y) = cx x + cy y + c (the weights are affine in the point)."""
        a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
        v0, v1 = b - a, c - a
        den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
        den = torch.where(den.abs() < 1e-6, torch.full_like(den, 1e-6), den).unsqueeze(-1)
        # l1 = ((x - ax) v1y - v1x (y - ay)) / den, l2 = (v0x (y - ay) - (x - ax) v0y) / den
        l1 = torch.stack([v1[..., 1], -v1[..., 0], v1[..., 0] * a[..., 1] - a[..., 0] * v1[..., 1]], -1) / den
        l2 = torch.stack([-v0[..., 1], v0[..., 0], a[..., 0] * v0[..., 1] - v0[..., 0] * a[..., 1]], -1) / den
        l0 = torch.cat([-l1[..., :2] - l2[..., :2], 1 - l1[..., 2:] - l2[..., 2:]], -1)
        return torch.stack([l0, l1, l2], -2)

    # Layout: per-point tensors keep the points on the last axis and x, y apart. ONNX
    # Runtime broadcasts a (..., 1) operand along a last axis at memory speed, but a
    # (..., 1, 2) one along the axis before a trailing 2 about 15 times slower.
    def rasterize(self, tri_xy: torch.Tensor, priority: torch.Tensor, g) -> tuple[torch.Tensor, torch.Tensor]:
        """Which triangle covers each grid point: (N, G*G) index, (N, G*G) covered 0/1.

        Each triangle tests the grid points of a window from its bounding box's corner;
        where triangles overlap (a fold behind the nose) the nearest wins: a scatter-max
        of priority * TRIANGLE_SLOTS + index.
        """
        n = tri_xy.shape[0]
        keys, cells = [], []
        for index in self.groups:
            members = getattr(self, f"group_{index}")
            window_x, window_y = getattr(self, f"window_x_{index}"), getattr(self, f"window_y_{index}")
            tri = tri_xy.index_select(1, members)  # (N, Tg, 3, 2)
            first = torch.ceil((tri.amin(2) - (GRID_STRIDE - 1) * 0.5) / GRID_STRIDE)  # (N, Tg, 2)
            first_x, first_y = first[..., 0:1], first[..., 1:2]  # (N, Tg, 1)
            cell_x, cell_y = first_x + window_x, first_y + window_y  # (N, Tg, K*K)
            planes = self.barycentric_planes(tri)  # (N, Tg, 3, 3)
            start_x = first_x * GRID_STRIDE + (GRID_STRIDE - 1) * 0.5
            start_y = first_y * GRID_STRIDE + (GRID_STRIDE - 1) * 0.5
            lowest = None
            for j in range(3):
                cx, cy, c = planes[:, :, j, 0:1], planes[:, :, j, 1:2], planes[:, :, j, 2:3]
                weight = (cx * start_x + cy * start_y + c) + (cx * GRID_STRIDE) * window_x + (cy * GRID_STRIDE) * window_y
                lowest = weight if lowest is None else torch.minimum(lowest, weight)
            inside = (lowest >= -1e-4) & (cell_x >= 0) & (cell_y >= 0) & (cell_x <= g - 1) & (cell_y <= g - 1)
            key = priority.index_select(1, members).unsqueeze(2) * TRIANGLE_SLOTS + members.view(1, -1, 1).float()
            keys.append(torch.where(inside, key, torch.full_like(lowest, -1.0)).reshape(n, -1))
            cells.append((cell_y.clamp(0, g - 1) * g + cell_x.clamp(0, g - 1)).reshape(n, -1).long())
        winner = torch.zeros_like(tri_xy[:, :1, 0, 0]) - torch.ones_like(self.first_cells(self.grid_points, g)[..., 0])  # (N, G*G) of -1
        winner = winner.scatter_reduce(1, torch.cat(cells, 1), torch.cat(keys, 1), reduce="amax", include_self=True)
        covered = (winner >= 0).float()
        winner = winner.clamp_min(0)
        triangle = (winner - torch.floor(winner * (1.0 / TRIANGLE_SLOTS)) * TRIANGLE_SLOTS).long()
        return triangle, covered

    def interpolate(self, triangle: torch.Tensor, target_xy: torch.Tensor, values: torch.Tensor,
                    grid_x: torch.Tensor, grid_y: torch.Tensor) -> torch.Tensor:
        """Vertex values (N, V, C) at the grid points (x, y: (1, P)), through their
        covering triangle (N, P): (N, C, P)."""
        n, points, c = triangle.shape[0], triangle.shape[1], values.shape[-1]
        planes = self.barycentric_planes(self.corners(target_xy)).reshape(n, -1, 9).transpose(1, 2)  # (N, 9, T)
        plane = torch.gather(planes, 2, triangle.unsqueeze(1).expand(-1, 9, -1))  # (N, 9, P)
        corner = self.triangles.index_select(0, triangle.reshape(-1)).reshape(n, points, 3)
        corner = corner.transpose(1, 2).reshape(n, 1, 3 * points)  # (N, 1, 3P): corner-major
        at = torch.gather(values.transpose(1, 2), 2, corner.expand(-1, c, -1)).reshape(n, c, 3, points)
        result = None
        for j in range(3):
            weight = plane[:, 3 * j] * grid_x + plane[:, 3 * j + 1] * grid_y + plane[:, 3 * j + 2]  # (N, P)
            term = weight.unsqueeze(1) * at[:, :, j]
            result = term if result is None else result + term
        return result

    def facing(self, mesh: torch.Tensor) -> torch.Tensor:
        """Per triangle, how squarely it faces the camera (N, T): the 2D signed area
        over the 3D area of the mesh triangle (0 edge-on, negative turned away)."""
        tri = self.corners(mesh)
        u, v = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
        nx = u[..., 1] * v[..., 2] - u[..., 2] * v[..., 1]
        ny = u[..., 2] * v[..., 0] - u[..., 0] * v[..., 2]
        nz = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
        return nz / torch.sqrt(nx * nx + ny * ny + nz * nz + 1e-6)

    @staticmethod
    def visibility(ratio: torch.Tensor) -> torch.Tensor:
        """0..1 from a triangle's facing in the user's photo over its facing in the target."""
        return ((ratio - VISIBLE_FROM) / (VISIBLE_TO - VISIBLE_FROM)).clamp(0, 1)

    @staticmethod
    def turn_past_mirror_yaw(mesh: torch.Tensor) -> torch.Tensor:
        """(N, 1): 0 for a head turned less than MIRROR_FROM_YAW_DEG, 1 past MIRROR_TO_YAW_DEG
        (the cheek-to-cheek line's slope out of the image plane, as face_quality measures yaw)."""
        across = mesh[:, CHEEK_RIGHT] - mesh[:, CHEEK_LEFT]
        slope = (across[:, 2:3] / across[:, 0:1].abs().clamp_min(1e-3)).abs()
        low, high = np.tan(np.radians(MIRROR_FROM_YAW_DEG)), np.tan(np.radians(MIRROR_TO_YAW_DEG))
        return ((slope - float(low)) / float(high - low)).clamp(0, 1)

    @staticmethod
    def scaled(image: torch.Tensor, size, factor) -> torch.Tensor:
        """image (N, 3, F, F) resized by factor (<= 1) to (size, size): a 3x3 box low-pass,
        full at half size and none at full size, then bilinear (the exporter has no
        antialiased resize; a bilinear reduction by up to 2 after it does not alias)."""
        prefilter = torch.clamp(torch.as_tensor(2 * (1 - factor)), 0, 1)
        smoothed = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
        image = image + prefilter * (smoothed - image)
        return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)

    def sample(self, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup of image (N, 3, F, F) at positions (N, 2, F, F), edges clamped.

        Written as four gathers rather than grid_sample: ONNX Runtime's CPU GridSample
        kernel is several times slower than its gathers.
        """
        n, size = image.shape[0], image.shape[-1]
        xy = positions.reshape(n, 2, -1).clamp(0, size - 1)
        corner = xy.floor().clamp(max=size - 2)
        frac = xy - corner
        index = (corner[:, 1:2] * size + corner[:, 0:1]).to(torch.int64).expand(n, 3, -1)
        flat = image.reshape(n, 3, -1)

        def at(offset: int) -> torch.Tensor:
            return torch.gather(flat, 2, index + offset)

        top_left, top_right, bottom_left, bottom_right = at(0), at(1), at(size), at(size + 1)
        fx, fy = frac[:, 0:1], frac[:, 1:2]
        top = top_left + (top_right - top_left) * fx
        bottom = bottom_left + (bottom_right - bottom_left) * fx
        return (top + (bottom - top) * fy).reshape(n, 3, size, size)

    # ---- masks ----------------------------------------------------------------
    def polygon_distance(self, polygon: torch.Tensor, size) -> torch.Tensor:
        """Signed distance (N, 1, F/8, F/8), positive inside, from a coarse grid to a closed polygon."""
        cells = size // DISTANCE_DOWNSCALE
        return signed_distance(self.first_cells(self.mask_points, cells), polygon, cells)

    def face_polygon(self, mesh_xy: torch.Tensor) -> torch.Tensor:
        oval = mesh_xy.index_select(1, self.oval_index)
        center = mesh_xy[:, NOSE_TIP : NOSE_TIP + 1]
        return center + (oval - center) * self.oval_shrink

    @staticmethod
    def smooth(x: torch.Tensor) -> torch.Tensor:
        """A small blur at grid resolution, edges not darkened."""
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    # ---- colour ---------------------------------------------------------------
    @staticmethod
    def convert(colours: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,njhw->nihw", matrix, colours)

    @staticmethod
    def weighted_stats(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = weight / weight.sum((2, 3), keepdim=True).clamp_min(1e-3)
        mean = (x * weight).sum((2, 3), keepdim=True)
        std = torch.sqrt((((x - mean) ** 2) * weight).sum((2, 3), keepdim=True) + 1e-6)
        return mean, std

    def masked_blur(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Low-pass of x inside mask only (normalised convolution), so the background
        does not bleed into the face's lighting estimate. x and mask are at grid size;
        the result is at 1/(lighting_blur) size, for the caller to upsample."""
        k = self.lighting_blur // GRID_STRIDE
        num = F.avg_pool2d(F.avg_pool2d(x * mask, k), 3, stride=1, padding=1, count_include_pad=False)
        den = F.avg_pool2d(F.avg_pool2d(mask, k), 3, stride=1, padding=1, count_include_pad=False)
        return num / den.clamp_min(1e-3)

    def shine(self, user_small: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """How much each grid cell of the user's face (YCbCr, grid size) is a specular
        highlight: its luma over the skin's smooth luma around it (inside `region`)."""
        local = F.interpolate(self.masked_blur(user_small[:, :1], region), size=user_small.shape[-2:],
                              mode="bilinear", align_corners=False)
        excess = user_small[:, :1] / local.clamp_min(1e-3) - 1
        return ((excess - SHINE_FROM) / (SHINE_TO - SHINE_FROM)).clamp(0, 1)

    def skin_weight(self, user_small: torch.Tensor, skin: torch.Tensor, feature: torch.Tensor,
                    beard: torch.Tensor, shine: torch.Tensor, above_brow: torch.Tensor | None = None) -> torch.Tensor:
        """1 where the user's pixel (YCbCr, grid size) may be used: skin-coloured, not
        dark and not shine, or inside an eye, brow or lip triangle (features are never
        tested), or dark in the beard zone; just above the brows, not much darker."""
        mean, std = self.weighted_stats(user_small, skin)
        spread = std[:, 1:3].clamp_min(SKIN_CHROMA_MIN_SPREAD)
        chroma = torch.sqrt((((user_small[:, 1:3] - mean[:, 1:3]) / spread) ** 2).sum(1, keepdim=True))
        off_colour = ((chroma - SKIN_CHROMA_FROM) / (SKIN_CHROMA_TO - SKIN_CHROMA_FROM)).clamp(0, 1)
        darkness = user_small[:, 0:1] / mean[:, 0:1].clamp_min(1e-3)
        dark = ((SKIN_DARK_FROM - darkness) / (SKIN_DARK_FROM - SKIN_DARK_TO)).clamp(0, 1)
        turned_down = torch.maximum(off_colour, dark)
        turned_down = turned_down + beard * (off_colour * (1 - dark) - turned_down)
        if above_brow is not None:
            much_darker = ((BROW_DARK_FROM - darkness) / (BROW_DARK_FROM - BROW_DARK_TO)).clamp(0, 1)
            turned_down = turned_down + above_brow * (torch.maximum(off_colour, much_darker) - turned_down)
        turned_down = torch.maximum(turned_down, shine)
        return 1 - (1 - feature) * turned_down

    @staticmethod
    def fill_from_surroundings(face: torch.Tensor, source: torch.Tensor, inside: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The face (full size) averaged over `source` (weights at grid size) around each
        grid cell, and how much to trust that: the source's share of the window, full from
        FILL_FULL_COVERAGE, only `inside` (the visible face). Both upsampled to full size."""
        size = face.shape[-1]
        pool = lambda x: F.avg_pool2d(x, FILL_WINDOW_CELLS, stride=1, padding=FILL_WINDOW_CELLS // 2,
                                      count_include_pad=False)
        coverage = pool(source)
        fill = pool(F.avg_pool2d(face, GRID_STRIDE) * source) / coverage.clamp_min(1e-3)
        trust = (coverage / FILL_FULL_COVERAGE).clamp(0, 1) * inside
        up = F.interpolate(torch.cat([fill, trust], 1), size=(size, size), mode="bilinear", align_corners=False)
        return up[:, 0:3], up[:, 3:4]

    def match_colour(self, user: torch.Tensor, template: torch.Tensor, region: torch.Tensor,
                     lighting_region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """User face (RGB 0..1) recoloured to the template's skin statistics and lighting.

        Statistics come from `region` (visible skin, grid size). Returns the recoloured
        face and a low-frequency field (at 1/DETAIL_SCALE size, for mix_appearance to add
        with its own low-pass) that replaces the user's light and colour by the template's.

        Luma is scaled about the skin's mean and moved to the template's. Colour is
        matched as chroma per unit of luma (Cb, Cr over Y + CHROMA_LUMA_FLOOR), which
        coloured light moves by the same amount at every brightness: the skin lands on
        the template's colour, its shadows stay the same hue, and the eyes lose the cast
        with it (a constant chroma shift turned blue eyes green under magenta light and
        the whites purple under green).
        """
        user_small = self.convert(F.avg_pool2d(user, GRID_STRIDE), self.rgb_to_ycc)
        template_small = self.convert(F.avg_pool2d(template, GRID_STRIDE), self.rgb_to_ycc)
        user_luma, user_luma_std = self.weighted_stats(user_small[:, :1], region)
        template_luma, template_luma_std = self.weighted_stats(template_small[:, :1], region)
        user_tint, user_tint_std = self.weighted_stats(self.chroma_per_luma(user_small), region)
        template_tint, template_tint_std = self.weighted_stats(self.chroma_per_luma(template_small), region)
        limit = lambda ratio: ratio.clamp(1.0 / self.max_spread_ratio, self.max_spread_ratio)  # noqa: E731
        # Colour variation is narrowed to the template's, never widened: widened, the
        # tint of grey stubble or a shadow moved away from the skin's (a green upper lip).
        luma_ratio, tint_ratio = limit(template_luma_std / user_luma_std), limit(template_tint_std / user_tint_std).clamp_max(1.0)

        natural = self.natural_skin(user_tint, template_tint)
        skin_colour = (user_tint * user_tint).sum(1, keepdim=True).clamp_min(1e-6)

        def recolour(ycc: torch.Tensor) -> torch.Tensor:
            luma = (ycc[:, :1] - user_luma) * luma_ratio + template_luma
            tint = self.chroma_per_luma(ycc)
            # How much of the skin's colour a pixel has (1 the skin, 0 grey): on a photo with
            # natural skin colour, only that much of the skin's move is made.
            along = ((tint * user_tint).sum(1, keepdim=True) / skin_colour).clamp(0, 1)
            move = 1 - natural * (1 - along)
            tint = tint + (template_tint - user_tint) * move + (tint - user_tint) * (tint_ratio - 1)
            return torch.cat([luma, tint * (luma + CHROMA_LUMA_FLOOR)], 1)

        matched_small = recolour(user_small)
        shading = self.masked_blur(template_small, lighting_region) - self.masked_blur(matched_small, lighting_region)
        size = user.shape[-1] // DETAIL_SCALE
        shading = F.interpolate(self.convert(shading, self.ycc_to_rgb), size=(size, size), mode="bilinear", align_corners=False)
        return self.convert(recolour(self.convert(user, self.rgb_to_ycc)), self.ycc_to_rgb), shading

    @staticmethod
    def natural_skin(user_tint: torch.Tensor, template_tint: torch.Tensor) -> torch.Tensor:
        """(N, 1, 1, 1), 0..1: whether the user's skin has a natural colour (of the template
        skin's hue, at least about as saturated), so its difference from the template's is
        the person's, not the light's."""
        user_norm = torch.sqrt((user_tint * user_tint).sum(1, keepdim=True))
        template_norm = torch.sqrt((template_tint * template_tint).sum(1, keepdim=True)).clamp_min(1e-3)
        cosine = (user_tint * template_tint).sum(1, keepdim=True) / (user_norm * template_norm).clamp_min(1e-6)
        hue = ((cosine - NATURAL_HUE_FROM) / (NATURAL_HUE_TO - NATURAL_HUE_FROM)).clamp(0, 1)
        saturation = ((user_norm / template_norm - NATURAL_SATURATION_FROM)
                      / (NATURAL_SATURATION_TO - NATURAL_SATURATION_FROM)).clamp(0, 1)
        return hue * saturation

    @staticmethod
    def chroma_per_luma(ycc: torch.Tensor) -> torch.Tensor:
        return ycc[:, 1:] / (ycc[:, :1] + CHROMA_LUMA_FLOOR)

    @staticmethod
    def detail_amount(amount: torch.Tensor) -> torch.Tensor:
        """How much of the fine detail is the user's at fuse degree `amount` (0..1)."""
        detail = ((amount - DETAIL_MIX_START) / DETAIL_MIX_WIDTH).clamp(0, 1)
        return detail * detail * (3 - 2 * detail)  # smoothstep

    def mix_fill(self, fill: torch.Tensor, template: torch.Tensor, template_low: torch.Tensor,
                 amount: torch.Tensor) -> torch.Tensor:
        """The smooth fill of a turned-down patch mixed with the template as the face is
        (mix_appearance with a user face that has no detail): the template's fine detail
        goes by the detail curve, so its glasses or eyes there do not show through at
        the fuse degree's remainder. template_low: its low-pass, at 1/DETAIL_SCALE size."""
        template_low = F.interpolate(template_low, size=template.shape[-2:], mode="bilinear", align_corners=False)
        return template + self.detail_amount(amount) * (template_low - template) + amount * (fill - template_low)

    def mix_appearance(self, user: torch.Tensor, shading: torch.Tensor, template: torch.Tensor,
                       template_low: torch.Tensor, region: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
        """base(template) + amount * (base(user) - base(template)) plus the same for the
        detail (x - base(x)) on the steeper curve, with the user's detail scaled to the
        template's energy. base() is linear, so the mix is done with one upsampled
        low-pass: (1 - d) t + d s u + base((a - d s) u + (d - a) t). The user's face is
        u + shading, the shading smooth (given at 1/DETAIL_SCALE size): it joins the low-pass.
        template_low is base(t) before upsampling (1/DETAIL_SCALE size)."""
        user_low = F.avg_pool2d(user, DETAIL_SCALE) + shading
        # Detail energy: the variance inside each 8x8 block, over the region.
        weight = F.avg_pool2d(region, DETAIL_SCALE // GRID_STRIDE)
        weight = weight / weight.sum((2, 3), keepdim=True).clamp_min(1e-3)
        user_var = (F.avg_pool2d(user * user, DETAIL_SCALE) - user_low**2).sum(1, keepdim=True)
        template_var = (F.avg_pool2d(template * template, DETAIL_SCALE) - template_low**2).sum(1, keepdim=True)
        user_energy = torch.sqrt((user_var.clamp_min(0) * weight).sum((2, 3), keepdim=True) + 1e-8)
        template_energy = torch.sqrt((template_var.clamp_min(0) * weight).sum((2, 3), keepdim=True) + 1e-8)
        gain = (self.detail_compensation * template_energy / user_energy).clamp(MIN_DETAIL_GAIN, MAX_DETAIL_GAIN)
        detail_amount = self.detail_amount(amount)
        user_detail_weight = detail_amount * gain
        low = (amount - user_detail_weight) * user_low + (detail_amount - amount) * template_low + user_detail_weight * shading
        low = F.interpolate(low, size=user.shape[-2:], mode="bilinear", align_corners=False)
        return (1 - detail_amount) * template + user_detail_weight * user + low

    def forward(
        self,
        user_faces: torch.Tensor,
        user_meshes: torch.Tensor,
        template_faces: torch.Tensor,
        template_meshes: torch.Tensor,
        fuse_degree: torch.Tensor,
        profile_degree: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, count = user_faces.shape[0], user_faces.shape[1]
        # The working size is the template side's: the user's crop (always crop_px) is
        # scaled to it, the mesh by the same factor about pixel centres.
        size = template_faces.shape[2]
        g = size // GRID_STRIDE
        user = user_faces.reshape(-1, self.crop_px, self.crop_px, 3).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        to_working = size / self.crop_px
        user = self.scaled(user, size, to_working)
        template = template_faces.reshape(-1, size, size, 3).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        user_mesh = user_meshes.reshape(-1, MESH_POINTS, 3)
        user_mesh = torch.cat([(user_mesh[..., :2] + 0.5) * to_working - 0.5, user_mesh[..., 2:] * to_working], -1)
        template_mesh = template_meshes.reshape(-1, MESH_POINTS, 3)
        user_xy, template_xy = user_mesh[..., :2], template_mesh[..., :2]
        n = user_mesh.shape[0]
        appearance = (fuse_degree.reshape(batch, 1) * 0.01).clamp(0, 1).expand(batch, count).reshape(-1, 1, 1, 1)
        shape = (profile_degree.reshape(batch, 1) * 0.01).clamp(0, 1).expand(batch, count).reshape(-1, 1, 1)

        # 1. target geometry: the user's 3D shape in the template's pose, by profile_degree
        target = template_mesh + shape * (self.pose_onto(user_mesh, template_mesh) - template_mesh)
        target_xy = target[..., :2]

        # 2. triangles of the target on the grid; every map is barycentric in them
        ring = ring_points(template_xy)
        ring_3d = torch.cat([ring, torch.zeros_like(ring[..., :1])], -1)
        target_vertices = torch.cat([target_xy, ring], 1)
        target_3d, user_3d = torch.cat([target, ring_3d], 1), torch.cat([user_mesh, ring_3d], 1)
        to_user = self.similarity_fit(target_xy, user_xy)
        depth = self.corners(target_3d[..., 2:3]).mean((2, 3))  # (N, T)
        low, high = depth.amin(1, keepdim=True), depth.amax(1, keepdim=True)
        nearness = torch.floor((high - depth) / (high - low).clamp_min(1e-3) * DEPTH_LEVELS) + 1
        priority = nearness * (1 - self.ring_triangle)
        triangle, covered = self.rasterize(self.corners(target_vertices), priority, g)
        user_vertices = torch.cat([user_xy, self.apply_similarity(ring, to_user)], 1)
        values = torch.cat([
            user_vertices,
            torch.cat([template_xy, ring], 1),
            self.vertex_inside.expand(n, -1, -1),
            user_vertices.index_select(1, self.mirror_vertex),  # where the mirror point is in the user's crop
        ], -1)
        grid_xy = self.first_cells(self.grid_points, g)  # (1, P, 2)
        grid_cf = grid_xy.transpose(1, 2)  # (1, 2, P)
        at_grid = self.interpolate(triangle, target_vertices, values, grid_cf[:, 0], grid_cf[:, 1]) * covered.unsqueeze(1)
        uncovered = (1 - covered).unsqueeze(1)  # (N, 1, P)
        user_grid = at_grid[:, 0:2] + uncovered * self.apply_similarity(grid_xy.expand(n, -1, -1), to_user).transpose(1, 2)
        template_grid = at_grid[:, 2:4] + uncovered * grid_cf
        mirror_grid = at_grid[:, 5:7] + uncovered * user_grid
        # Displacements are upsampled (not positions): bilinear upsampling holds the
        # outermost grid values to the crop's edge, which is exact for a displacement of 0.
        shifts = torch.cat([user_grid - grid_cf, template_grid - grid_cf, mirror_grid - grid_cf, at_grid[:, 4:5]], 1)
        maps = shifts.reshape(n, 7, g, g)
        full = F.interpolate(maps[:, 0:6], size=(size, size), mode="bilinear", align_corners=False)
        identity = self.identity_grid[:, :, :size, :size]
        user_warped = self.sample(user, full[:, 0:2] + identity)
        template_warped = self.sample(template, full[:, 2:4] + identity)
        mirror_warped = self.sample(user, full[:, 4:6] + identity)

        # 3. where the user's face may be used: visible, skin or feature, inside the oval
        target_facing = self.facing(target_3d).clamp_min(0.2)
        visible = self.visibility(self.facing(user_3d) / target_facing) * (1 - self.ring_triangle)
        # The mirror triangle's corners run the other way round: its facing is negated.
        mirror_visible = self.visibility(-self.facing(user_3d.index_select(1, self.mirror_vertex)) / target_facing)
        mirrored = ((1 - visible) * mirror_visible * (1 - self.ring_triangle) * (1 - self.eye_or_lip_triangle)
                    * self.turn_past_mirror_yaw(user_mesh))
        per_triangle = torch.stack([visible, self.feature_triangle.expand(n, -1), self.beard_triangle.expand(n, -1), mirrored,
                                    self.above_brow_triangle.expand(n, -1)], 1)
        at_triangle = torch.gather(per_triangle, 2, triangle.unsqueeze(1).expand(-1, 5, -1)) * covered.unsqueeze(1)
        at_triangle = at_triangle.reshape(n, 5, g, g)
        feature_grid, beard_grid, above_brow_grid = at_triangle[:, 1:2], at_triangle[:, 2:3], at_triangle[:, 4:5]
        mirrored_grid = self.smooth(at_triangle[:, 3:4])
        visible_grid = (self.smooth(at_triangle[:, 0:1]) + mirrored_grid).clamp(0, 1)
        mirrored_full = F.interpolate(mirrored_grid, size=(size, size), mode="bilinear", align_corners=False)
        user_warped = user_warped + mirrored_full * (mirror_warped - user_warped)
        coarse_distance = self.polygon_distance(self.face_polygon(target_xy), size)
        distance = F.interpolate(coarse_distance, size=(g, g), mode="bilinear", align_corners=False)
        feather_px = self.feather * size
        face_mask = torch.clamp(0.5 + distance / (2 * feather_px), 0, 1)
        inner = torch.clamp((distance - feather_px) / feather_px, 0, 1)
        user_small = self.convert(F.avg_pool2d(user_warped, GRID_STRIDE), self.rgb_to_ycc)
        shine = self.shine(user_small, inner * visible_grid * (1 - feature_grid))
        skin = inner * visible_grid * (1 - feature_grid) * (1 - shine)
        usable_sharp = face_mask * visible_grid * self.skin_weight(user_small, skin, feature_grid, beard_grid, shine,
                                                                   above_brow_grid)
        usable = self.smooth(usable_sharp)

        # 4-5. colour-matched user face mixed with the template face
        # Light is read off the skin only: a template's teeth in the estimate lit the user's
        # closed mouth as if it were bright (a pale band over the upper lip), its eye whites
        # and brows the skin around the user's eyes (white lids, blue-tinted brows).
        matched, shading = self.match_colour(user_warped, template_warped, skin, inner * (1 - shine) * (1 - feature_grid))
        template_low = F.avg_pool2d(template_warped, DETAIL_SCALE)  # for the face's mix and the fill's
        face = self.mix_appearance(matched, shading, template_warped, template_low, skin, appearance)

        # 6. feathered blend into the warped template (or, in small turned-down patches of
        # the visible face, into the surrounding fused skin); alpha covers all that changed.
        # The fill is of skin only: features are usable but never skin (lashes and make-up
        # averaged in make a smudge), and partly usable cells count little. It is mixed
        # with the template by fuse_degree as the face is, so at 0 the template comes back exactly.
        fill_source = (usable_sharp * (1 - feature_grid)) ** 2
        fill, fill_weight = self.fill_from_surroundings(face, fill_source, self.smooth(face_mask * visible_grid))
        fallback = template_warped + fill_weight * (self.mix_fill(fill, template_warped, template_low, appearance) - template_warped)
        weight = F.interpolate(usable, size=(size, size), mode="bilinear", align_corners=False)
        fused = fallback + weight * (face - fallback)
        alpha = F.interpolate((2 * maps[:, 6:7]).clamp(0, 1), size=(size, size), mode="bilinear", align_corners=False)
        alpha = alpha * self.border_window(size)

        fused_u8 = (fused.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
        alpha_u8 = (alpha.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
        fused_u8 = fused_u8.permute(0, 2, 3, 1).reshape(batch, count, size, size, 3)
        alpha_u8 = alpha_u8.reshape(batch, count, size, size)
        return fused_u8, alpha_u8


def mirror_index_from_meshes(meshes: list, flipped_meshes: list, crop_px: int = FACE_CROP_PX) -> list[int]:
    """Left/right pairing of mesh points, read off the mesh model itself.

    For frontal faces, the mesh of the left-right flipped crop, flipped back, puts each
    point i where its mirror partner lies in the original mesh. An optimal assignment
    over several faces turns that into a permutation.
    """
    from scipy.optimize import linear_sum_assignment

    cost = np.zeros((MESH_POINTS, MESH_POINTS))
    for mesh, flipped in zip(meshes, flipped_meshes):
        back = np.stack([(crop_px - 1) - flipped[:, 0], flipped[:, 1]], -1)
        cost += ((back[:, None, :] - mesh[None, :, :2]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    index = cols[np.argsort(rows)]
    return [int(i) for i in index]


def canonical_mesh(meshes: list[np.ndarray], mirror_index: list[int], crop_px: int = FACE_CROP_PX) -> np.ndarray:
    """A symmetric frontal mesh (468, 3): the mean of frontal meshes and their mirror images."""
    mean = np.mean([m[:, :3] for m in meshes], axis=0)
    mirrored = mean[mirror_index].copy()
    mirrored[:, 0] = (crop_px - 1) - mirrored[:, 0]
    return ((mean + mirrored) / 2).astype(np.float32)


def fuse_onnx(module: FuseProgram, path: Path) -> onnx.ModelProto:
    size = module.crop_px
    faces = torch.zeros(2, 1, size, size, 3, dtype=torch.uint8)
    # Traced at a smaller working size than the user's crop, so that no size is baked in.
    template_faces = torch.zeros(2, 1, min(WORKING_CROP_PX), min(WORKING_CROP_PX), 3, dtype=torch.uint8)
    meshes = torch.zeros(2, 1, MESH_POINTS, 3)
    degree = torch.full((2, 1), 50.0)
    example = (faces, meshes, template_faces, meshes, degree, degree)
    axes = batch_and_faces_axes(("user_faces", "user_meshes", "template_faces", "template_meshes", *OUTPUT_NAMES))
    axes.update({"fuse_degree": {0: "batch"}, "profile_degree": {0: "batch"}})
    for name in ("template_faces", "fused_faces", "fused_masks"):
        axes[name].update({2: "size", 3: "size"})
    model = onnx_from_module(module, example, INPUT_NAMES, OUTPUT_NAMES, axes, path, opset=FUSE_OPSET)
    _inline_scalar_branches(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def _inline_scalar_branches(graph: onnx.GraphProto) -> None:
    """The exporter wraps the scatter-max in `If (input is 0-d)` nodes whose branch
    outputs carry a wrong rank (ONNX Runtime warns on every run). The tensors here are
    never 0-d: keep the else branches' nodes in place of the Ifs."""
    nodes = []
    for node in graph.node:
        if node.op_type != "If":
            nodes.append(node)
            continue
        branch = next(a.g for a in node.attribute if a.name == "else_branch")
        nodes.extend(branch.node)
        nodes.extend(
            onnx.helper.make_node("Identity", [inner.name], [outer], name=f"{node.name}/{outer}")
            for inner, outer in zip(branch.output, node.output)
        )
    del graph.node[:]
    graph.node.extend(nodes)
