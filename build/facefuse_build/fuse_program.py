"""fuse: the face-fusion tensor program, authored in PyTorch and exported to ONNX.

No learned face-swap weights ship in any package, so fusion is geometry and colour
done with tensors. For each (user face, template face) pair, both aligned into the same
canonical crop by `align` and each with its 468-point mesh:

1. shape: the target geometry is the template mesh moved toward the user's mesh (after
   a similarity fit removes pose/scale) by `profile_degree`;
2. warp: both faces are resampled onto the target geometry through dense backward maps
   interpolated from the mesh correspondences (normalised Gaussian kernels on a coarse
   grid, upsampled), so at any degree the two faces line up and never ghost. A user
   face turned sideways shows one cheek foreshortened or hidden: that half of the
   target is filled from the mirrored photo (the mesh's own left/right point pairing,
   `mirror_index`), blended in smoothly with the amount of turn, and the shape is
   taken from the symmetrised mesh;
3. colour: the user's face takes the template face's colour statistics (YCbCr mean and
   spread over the inner face) and its low-frequency lighting;
4. appearance: template and colour-matched user face are mixed by `fuse_degree`, the
   smooth base linearly and the fine detail (eyes, brows, lines, glasses) on a steeper
   curve, so a mid-to-high degree never shows two sets of features at half strength;
   the user's detail is softened to the template's sharpness where the template is
   softer (film stills, paintings);
5. blend: a soft mask from the mesh's face oval (forehead kept below the hairline)
   merges the face into the warped template with a Laplacian pyramid (multi-band), so
   low frequencies blend wide and edges stay sharp.

Outputs are the fused crop and an alpha mask covering everything the program changed;
outside the alpha the poster is the template, bit for bit.

A learned swapper with the same inputs and outputs can replace this as a new version.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn.functional as F

from facefuse.contract import FACE_CROP_PX, MESH_POINTS
from facefuse_build.export import batch_and_faces_axes, onnx_from_module

INPUT_NAMES = ("user_faces", "user_meshes", "template_faces", "template_meshes", "fuse_degree", "profile_degree")
OUTPUT_NAMES = ("fused_faces", "fused_masks")

# MediaPipe face-mesh face oval, clockwise from the top of the forehead (index 10).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Oval points on the upper forehead: pulled further in, so fringes and hairlines of
# the template stay the template's.
FOREHEAD = frozenset({10, 338, 297, 332, 284, 54, 103, 67, 109})
NOSE_TIP = 4
# Cheek extremes of the face oval (image left, image right): with the nose tip they
# measure how far the head is turned.
CHEEK_LEFT, CHEEK_RIGHT = 234, 454
# Turn (nose offset from the cheeks' midpoint, as a fraction of face width) at which
# the mirrored half starts to replace the hidden one, and the span over which it does.
TURN_START, TURN_SPAN = 0.10, 0.12
# Masks, colour statistics and lighting are smooth: they are computed on a 4x smaller
# grid and upsampled, which keeps the program cheap enough for CPU serving.
MASK_DOWNSCALE = 4
# Appearance: fine detail is what is lost by an 8x low-pass; it switches from the
# template's to the user's between fuse degrees 25 and 65.
DETAIL_SCALE = 8
DETAIL_MIX_START, DETAIL_MIX_WIDTH = 0.25, 0.40
MIN_DETAIL_GAIN = 0.5
# The mask's signed distance is smoother still: an 8x smaller grid.
DISTANCE_DOWNSCALE = 8


class FuseProgram(torch.nn.Module):
    def __init__(
        self,
        crop_px: int = FACE_CROP_PX,
        field_grid: int = 32,
        kernel_sigma: float = 0.045,
        background_weight: float = 0.4,
        oval_shrink: float = 0.93,
        forehead_shrink: float = 0.80,
        feather: float = 0.04,
        pyramid_levels: int = 5,
        lighting_blur: int = 48,
        max_spread_ratio: float = 1.6,
        mirror_index: list[int] | None = None,
    ):
        super().__init__()
        # Left/right partner of every mesh point (identity: no pose completion).
        mirror = torch.tensor(mirror_index if mirror_index is not None else range(MESH_POINTS), dtype=torch.long)
        self.register_buffer("mirror_index", mirror, persistent=False)
        self.crop_px = crop_px
        self.field_grid = field_grid
        self.sigma_px = kernel_sigma * crop_px
        self.background_weight = background_weight
        self.feather_px = feather * crop_px
        self.pyramid_levels = pyramid_levels
        self.lighting_blur = lighting_blur
        self.max_spread_ratio = max_spread_ratio
        shrink = [forehead_shrink if i in FOREHEAD else oval_shrink for i in FACE_OVAL]
        self.register_buffer("oval_index", torch.tensor(FACE_OVAL, dtype=torch.long), persistent=False)
        self.register_buffer("oval_shrink", torch.tensor(shrink).view(1, -1, 1), persistent=False)
        coarse = torch.linspace(0, crop_px - 1, field_grid)
        gy, gx = torch.meshgrid(coarse, coarse, indexing="ij")
        self.register_buffer("coarse_points", torch.stack([gx, gy], -1).view(1, -1, 2), persistent=False)
        cells = crop_px // DISTANCE_DOWNSCALE
        centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * DISTANCE_DOWNSCALE - 0.5
        my, mx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("mask_points", torch.stack([mx, my], -1).view(1, -1, 2), persistent=False)
        full = torch.arange(crop_px, dtype=torch.float32)
        iy, ix = torch.meshgrid(full, full, indexing="ij")
        self.register_buffer("identity_grid", torch.stack([ix, iy]).view(1, 2, crop_px, crop_px), persistent=False)
        edge = torch.clamp(torch.minimum(full, crop_px - 1 - full) / (0.04 * crop_px), 0, 1)
        self.register_buffer("border_window", (edge.view(-1, 1) * edge.view(1, -1)).view(1, 1, crop_px, crop_px), persistent=False)
        # Full-range BT.601 YCbCr, as JPEG uses: linear, so the colour transfer is cheap.
        rgb_to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
        self.register_buffer("rgb_to_ycc", rgb_to_ycc, persistent=False)
        self.register_buffer("ycc_to_rgb", torch.linalg.inv(rgb_to_ycc), persistent=False)

    # ---- geometry -------------------------------------------------------------
    @staticmethod
    def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Least-squares similarity src -> dst per face: (rotation-scale 2x2, src mean, dst mean)."""
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

    def backward_map(self, target: torch.Tensor, source: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """Source pixel positions (N, 2, F, F) that move `source` points onto `target` ones.

        Displacements known at the mesh points are spread with normalised Gaussian
        weights on a coarse grid; far from the mesh they fade to `background` (a
        displacement field at the coarse points).
        """
        n = target.shape[0]
        points = self.coarse_points.expand(n, -1, -1)
        dist2 = (
            (points * points).sum(-1, keepdim=True)
            + (target * target).sum(-1).unsqueeze(1)
            - 2 * torch.matmul(points, target.transpose(1, 2))
        )
        weights = torch.exp(dist2 * (-0.5 / self.sigma_px**2))
        displacement = torch.matmul(weights, source - target)
        total = weights.sum(-1, keepdim=True) + self.background_weight
        displacement = displacement + self.background_weight * background
        field = (displacement / total).view(n, self.field_grid, self.field_grid, 2).permute(0, 3, 1, 2)
        field = F.interpolate(field, size=(self.crop_px, self.crop_px), mode="bilinear", align_corners=True)
        return self.identity_grid + field

    def sample(self, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup of image (N, 3, F, F) at positions (N, 2, F, F), edges clamped.

        Written as four gathers rather than grid_sample: ONNX Runtime's CPU GridSample
        kernel is several times slower than its gathers.
        """
        n, size = image.shape[0], self.crop_px
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

    def turn(self, mesh_xy: torch.Tensor) -> torch.Tensor:
        """Signed head turn per face: nose tip offset from the cheeks' midpoint / face width."""
        left, right, nose = mesh_xy[:, CHEEK_LEFT, 0], mesh_xy[:, CHEEK_RIGHT, 0], mesh_xy[:, NOSE_TIP, 0]
        return (nose - 0.5 * (left + right)) / (right - left).abs().clamp_min(1.0)

    def mirrored(self, mesh_xy: torch.Tensor) -> torch.Tensor:
        """The mesh of the face flipped left-right: positions mirrored, points relabelled
        by the mirror pairing (point i of the flipped face is where its partner was)."""
        partner = mesh_xy.index_select(1, self.mirror_index)
        return torch.stack([(self.crop_px - 1) - partner[..., 0], partner[..., 1]], -1)

    # ---- masks ----------------------------------------------------------------
    def polygon_distance(self, polygon: torch.Tensor) -> torch.Tensor:
        """Signed distance (N, 1, F/8, F/8), positive inside, from a coarse grid to a closed polygon."""
        n = polygon.shape[0]
        p = self.mask_points.unsqueeze(2)  # 1, P, 1, 2
        a = polygon.unsqueeze(1)  # N, 1, E, 2
        b = torch.roll(polygon, -1, dims=1).unsqueeze(1)
        ab = b - a
        t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
        nearest = a + t.unsqueeze(-1) * ab
        dist = torch.sqrt(((p - nearest) ** 2).sum(-1) + 1e-6).amin(-1)
        # Crossing number of a ray toward +x decides inside/outside.
        py, px = p[..., 1], p[..., 0]
        ay, by, ax = a[..., 1], b[..., 1], a[..., 0]
        straddles = (ay > py) != (by > py)
        dy = torch.where(by - ay == 0, torch.full_like(by, 1e-6), by - ay)
        crosses = straddles & (px < ax + (py - ay) * ab[..., 0] / dy)
        inside = crosses.to(torch.float32).sum(-1).remainder(2.0)
        signed = dist * (inside * 2 - 1)
        cells = self.crop_px // DISTANCE_DOWNSCALE
        return signed.view(n, 1, cells, cells)

    def face_polygon(self, mesh_xy: torch.Tensor) -> torch.Tensor:
        oval = mesh_xy.index_select(1, self.oval_index)
        center = mesh_xy[:, NOSE_TIP : NOSE_TIP + 1]
        return center + (oval - center) * self.oval_shrink

    # ---- colour ---------------------------------------------------------------
    @staticmethod
    def convert(colours: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,njhw->nihw", matrix, colours)

    def masked_blur(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Low-pass of x inside mask only (normalised convolution), so the background
        does not bleed into the face's lighting estimate. x and mask are at 1/4 size;
        the result is at 1/(4 * lighting_blur / 4) size, for the caller to upsample."""
        k = self.lighting_blur // MASK_DOWNSCALE
        num = F.avg_pool2d(F.avg_pool2d(x * mask, k), 3, stride=1, padding=1, count_include_pad=False)
        den = F.avg_pool2d(F.avg_pool2d(mask, k), 3, stride=1, padding=1, count_include_pad=False)
        return num / den.clamp_min(1e-3)

    def match_colour(self, user: torch.Tensor, template: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """User face (RGB 0..1) recoloured to the template's skin statistics and lighting.

        Statistics come from the inner face region at 1/4 size (region is at that size).
        The YCbCr transfer is linear, so at full size it is one 3x3 matrix per face plus
        an offset and the luma shading field.
        """
        user_small = self.convert(F.avg_pool2d(user, MASK_DOWNSCALE), self.rgb_to_ycc)
        template_small = self.convert(F.avg_pool2d(template, MASK_DOWNSCALE), self.rgb_to_ycc)
        weight = region / region.sum((2, 3), keepdim=True).clamp_min(1.0)
        user_mean = (user_small * weight).sum((2, 3), keepdim=True)
        template_mean = (template_small * weight).sum((2, 3), keepdim=True)
        user_std = torch.sqrt((((user_small - user_mean) ** 2) * weight).sum((2, 3), keepdim=True) + 1e-6)
        template_std = torch.sqrt((((template_small - template_mean) ** 2) * weight).sum((2, 3), keepdim=True) + 1e-6)
        ratio = (template_std / user_std).clamp(1.0 / self.max_spread_ratio, self.max_spread_ratio)
        # Lighting: the template's low-frequency luma replaces the user's.
        matched_luma_small = (user_small[:, 0:1] - user_mean[:, 0:1]) * ratio[:, 0:1] + template_mean[:, 0:1]
        shading = self.masked_blur(template_small[:, 0:1], region) - self.masked_blur(matched_luma_small, region)
        shading = F.interpolate(shading, size=user.shape[-2:], mode="bilinear", align_corners=False)
        # RGB -> YCbCr -> scale about the user's mean, move to the template's -> RGB.
        transfer = torch.matmul(self.ycc_to_rgb, ratio.view(-1, 3, 1) * self.rgb_to_ycc)
        offset = torch.matmul(self.ycc_to_rgb, (template_mean - ratio * user_mean).view(-1, 3, 1))
        luma_to_rgb = self.ycc_to_rgb[:, 0].view(1, 3, 1, 1)
        return torch.einsum("nij,njhw->nihw", transfer, user) + offset.view(-1, 3, 1, 1) + shading * luma_to_rgb

    def mix_appearance(self, user: torch.Tensor, template: torch.Tensor, region: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
        """base(template) + amount * (base(user) - base(template)) plus the same for the
        detail (x - base(x)) on the steeper curve, with the user's detail softened to the
        template's. base() is linear, so the mix is done with one upsampled low-pass:
        (1 - d) t + d s u + base((a - d s) u + (d - a) t)."""
        user_low, template_low = F.avg_pool2d(user, DETAIL_SCALE), F.avg_pool2d(template, DETAIL_SCALE)
        # Detail energy: the variance inside each 8x8 block, over the inner face.
        weight = F.avg_pool2d(region, DETAIL_SCALE // MASK_DOWNSCALE)
        weight = weight / weight.sum((2, 3), keepdim=True).clamp_min(1.0)
        user_var = (F.avg_pool2d(user * user, DETAIL_SCALE) - user_low**2).sum(1, keepdim=True)
        template_var = (F.avg_pool2d(template * template, DETAIL_SCALE) - template_low**2).sum(1, keepdim=True)
        user_energy = torch.sqrt((user_var.clamp_min(0) * weight).sum((2, 3), keepdim=True) + 1e-8)
        template_energy = torch.sqrt((template_var.clamp_min(0) * weight).sum((2, 3), keepdim=True) + 1e-8)
        sharpness = (template_energy / user_energy).clamp(MIN_DETAIL_GAIN, 1.0)
        detail_amount = ((amount - DETAIL_MIX_START) / DETAIL_MIX_WIDTH).clamp(0, 1)
        detail_amount = detail_amount * detail_amount * (3 - 2 * detail_amount)  # smoothstep
        user_detail_weight = detail_amount * sharpness
        low = (amount - user_detail_weight) * user_low + (detail_amount - amount) * template_low
        low = F.interpolate(low, size=user.shape[-2:], mode="bilinear", align_corners=False)
        return (1 - detail_amount) * template + user_detail_weight * user + low

    # ---- blending -------------------------------------------------------------
    def pyramid_blend(self, front: torch.Tensor, back: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Laplacian-pyramid blend of front over back; the three share one pyramid pass."""
        gaussian = [torch.cat([front, back, mask], 1)]
        for _ in range(self.pyramid_levels - 1):
            gaussian.append(F.avg_pool2d(gaussian[-1], 2))

        def up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

        coarsest = gaussian[-1]
        blended = coarsest[:, 6:7] * coarsest[:, 0:3] + (1 - coarsest[:, 6:7]) * coarsest[:, 3:6]
        for level in range(self.pyramid_levels - 2, -1, -1):
            here = gaussian[level]
            detail = here[:, 0:6] - up(gaussian[level + 1][:, 0:6], here)
            m = here[:, 6:7]
            blended = up(blended, here) + m * detail[:, 0:3] + (1 - m) * detail[:, 3:6]
        return blended

    # ---- program --------------------------------------------------------------
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
        size = self.crop_px
        user = user_faces.reshape(-1, size, size, 3).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        template = template_faces.reshape(-1, size, size, 3).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        user_xy = user_meshes.reshape(-1, MESH_POINTS, 3)[..., :2]
        template_xy = template_meshes.reshape(-1, MESH_POINTS, 3)[..., :2]
        appearance = (fuse_degree.reshape(batch, 1) * 0.01).clamp(0, 1).expand(batch, count).reshape(-1, 1, 1, 1)
        shape = (profile_degree.reshape(batch, 1) * 0.01).clamp(0, 1).expand(batch, count).reshape(-1, 1, 1)

        # 1. target geometry (from the symmetrised user mesh as the head turns away)
        turn = self.turn(user_xy)
        completion = ((turn.abs() - TURN_START) / TURN_SPAN).clamp(0, 1).view(-1, 1, 1)
        mirror_xy = self.mirrored(user_xy)
        user_on_template = self.apply_similarity(user_xy, self.similarity_fit(user_xy, template_xy))
        mirror_on_template = self.apply_similarity(mirror_xy, self.similarity_fit(mirror_xy, template_xy))
        user_shape = user_on_template + 0.5 * completion * (mirror_on_template - user_on_template)
        target_xy = template_xy + shape * (user_shape - template_xy)

        # 2. both faces onto the target geometry: the user's face, its mirror image and the
        # template's, as three backward maps computed in one batch
        n = target_xy.shape[0]
        coarse = self.coarse_points.expand(n, -1, -1)
        user_background = self.apply_similarity(coarse, self.similarity_fit(target_xy, user_xy)) - coarse
        mirror_background = self.apply_similarity(coarse, self.similarity_fit(target_xy, mirror_xy)) - coarse
        maps = self.backward_map(
            target_xy.repeat(3, 1, 1), torch.cat([user_xy, mirror_xy, template_xy]),
            torch.cat([user_background, mirror_background, torch.zeros_like(coarse)]),
        )
        user_map, mirror_map, template_map = maps[:n], maps[n : 2 * n], maps[2 * n :]
        # The hidden half is the one the nose turns toward: it samples the user's face at
        # the mirrored positions of the visible half (a flip of the mirror map's x).
        mirror_in_user = torch.cat([(size - 1) - mirror_map[:, 0:1], mirror_map[:, 1:2]], 1)
        midline = target_xy[:, NOSE_TIP, 0].view(-1, 1, 1, 1)
        toward = torch.sign(turn).view(-1, 1, 1, 1)
        hidden_side = torch.sigmoid((self.identity_grid[:, 0:1] - midline) * toward / (0.03 * size))
        user_map = user_map + completion.view(-1, 1, 1, 1) * hidden_side * (mirror_in_user - user_map)
        user_warped = self.sample(user, user_map)
        template_warped = self.sample(template, template_map)

        # 3-4. colour-matched user face mixed with the template face
        coarse_distance = self.polygon_distance(self.face_polygon(target_xy))
        distance = F.interpolate(coarse_distance, size=(size, size), mode="bilinear", align_corners=False)
        face_mask = torch.clamp(0.5 + distance / (2 * self.feather_px), 0, 1)
        inner = torch.clamp((F.avg_pool2d(distance, MASK_DOWNSCALE) - self.feather_px) / self.feather_px, 0, 1)
        matched = self.match_colour(user_warped, template_warped, inner)
        face = self.mix_appearance(matched, template_warped, inner, appearance)

        # 5. multi-band blend into the warped template; alpha covers all that changed
        fused = self.pyramid_blend(face, template_warped, face_mask)
        reach = 0.12 * size
        alpha = torch.clamp((distance + reach) / (0.5 * reach), 0, 1) * self.border_window

        fused_u8 = (fused.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
        alpha_u8 = (alpha * 255.0 + 0.5).floor().to(torch.uint8)
        fused_u8 = fused_u8.permute(0, 2, 3, 1).reshape(batch, count, size, size, 3)
        alpha_u8 = alpha_u8.reshape(batch, count, size, size)
        return fused_u8, alpha_u8


def mirror_index_from_meshes(meshes: list, flipped_meshes: list, crop_px: int = FACE_CROP_PX) -> list[int]:
    """Left/right pairing of mesh points, read off the mesh model itself.

    For frontal faces, the mesh of the left-right flipped crop, flipped back, puts each
    point i where its mirror partner lies in the original mesh. An optimal assignment
    over several faces turns that into a permutation.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    cost = np.zeros((MESH_POINTS, MESH_POINTS))
    for mesh, flipped in zip(meshes, flipped_meshes):
        back = np.stack([(crop_px - 1) - flipped[:, 0], flipped[:, 1]], -1)
        cost += ((back[:, None, :] - mesh[None, :, :2]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    index = cols[np.argsort(rows)]
    return [int(i) for i in index]


def fuse_onnx(module: FuseProgram, path: Path) -> onnx.ModelProto:
    size = module.crop_px
    faces = torch.zeros(2, 1, size, size, 3, dtype=torch.uint8)
    meshes = torch.zeros(2, 1, MESH_POINTS, 3)
    degree = torch.full((2, 1), 50.0)
    example = (faces, meshes, faces, meshes, degree, degree)
    axes = batch_and_faces_axes(("user_faces", "user_meshes", "template_faces", "template_meshes", *OUTPUT_NAMES))
    axes.update({"fuse_degree": {0: "batch"}, "profile_degree": {0: "batch"}})
    return onnx_from_module(module, example, INPUT_NAMES, OUTPUT_NAMES, axes, path)

