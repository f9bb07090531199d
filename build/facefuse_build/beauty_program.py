"""beautify: smoothing, brightening, slimming and eye enlarging on the face mesh.

A tensor program authored in PyTorch and exported to ONNX, like `fuse`. It takes face
crops with their 468-point meshes and four strengths (0..100) per request:

- smoothing: a guided (edge-preserving) filter of the skin's luma only: the face oval kept
  below the hairline, less the eyes, brows, lips and nostrils, and less whatever is not
  skin-coloured or is dark (hair, a beard, glasses); blended in by the strength;
- brightening: the skin's luma lifted on a midtone curve, darker patches more (so the
  tone evens out), as the same grey added to R, G and B: hue stays exactly and the
  skin gets fairer, not more saturated; the same skin region, reaching down the neck over a short
  falloff so that no seam appears at the jaw;
- slimming: the jaw and cheek contour (the lower face oval) pulled toward the face's
  centre line, most at the jaw's corners and nothing at the chin's tip or the ears;
  each contour point moves a compactly supported neighbourhood (a (1 - t^2)^2 kernel),
  so nothing further than SLIM_RADIUS of the face's half-width from the contour moves;
- eye enlarging: a radial magnification inside an ellipse around each eye whose
  height stops short of the brow and whose width stops short of the face's edge, so an
  enlarged eye never reaches a brow or leaves the face.

The colour effects run first, on the photo's geometry; the two warps are one
displacement field and one bilinear lookup. Every effect is multiplied by its strength,
so at 0 the input comes back bit for bit. Outputs are the faces and a mask of every
pixel changed (the maximum with the mask that came in), for pasting back.

For a poster the faces are fuse's output: their geometry is the template's mesh moved
toward the user's posed shape by `profile_degree`, the same sum fuse makes (so fuse's
contract stays as it is). For a photo, `user_meshes` are the faces' own meshes and the
sum is their own geometry.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn.functional as F

from facefuse.contract import FACE_CROP_PX, MESH_POINTS, WORKING_CROP_PX
from facefuse_build.export import batch_and_faces_axes, onnx_from_module
from facefuse_build.fuse_program import FACE_OVAL, FOREHEAD, FuseProgram, signed_distance

INPUT_NAMES = ("faces", "face_masks", "face_meshes", "user_meshes", "profile_degree", "beauty")
OUTPUT_NAMES = ("beautified_faces", "beautified_masks")
BEAUTY_OPSET = 17

# MediaPipe face-mesh contours (closed loops).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# Around the nostrils and the nose's wings, below the tip.
NOSTRILS = (48, 64, 98, 97, 2, 326, 327, 294, 278, 344, 440, 275, 1, 45, 220, 115)
# Eye lids (upper, lower) and the eyes' corners.
EYE_LIDS = ((159, 145), (386, 374))
EYE_CORNERS = ((33, 133), (263, 362))
NOSE_BRIDGE, CHIN = 168, 152
# The lower oval from one ear to the other through the chin (clockwise in FACE_OVAL).
JAW = (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234)

# Masks are made on a grid this many times coarser than the crop (they are smooth), the
# warps' displacement on a finer one (an eye's ellipse is a few cells of it across).
MASK_STRIDE, WARP_STRIDE = 8, 4
# Feature margins and ramps, as shares of the face's width.
FEATURE_MARGIN, FEATURE_RAMP = 0.025, 0.03
# The face polygon: the oval pulled toward the nose tip (the forehead more, below the
# hairline), with a ramp inward; the colour effects reach beyond it, fading to 0 over
# NECK_REACH (so the neck and ears follow the face's tone without a seam at the jaw).
OVAL_SHRINK, FOREHEAD_SHRINK = 1.0, 0.86
OVAL_RAMP, NECK_REACH = 0.04, 0.22
# Skin test (YCbCr, 0..1): chroma distance from the face's skin, in spreads, and luma
# below these shares of the skin's.
SKIN_CHROMA_FROM, SKIN_CHROMA_TO, SKIN_CHROMA_MIN_SPREAD = 2.0, 3.5, 0.012
SKIN_DARK_FROM, SKIN_DARK_TO = 0.7, 0.5
# Smoothing: a guided filter at half size, its radius (half-size pixels) and edge
# threshold (variance, 0..1 values).
SMOOTH_RADIUS, SMOOTH_EPS = 2, 0.05**2
MAX_SMOOTHING = 0.85
# Brightening at 100: the midtone lift, and the share of a patch's shortfall from the
# skin's mean luma made up.
MAX_LIFT, MAX_EVENING = 0.40, 0.35
# Slimming at 100: the contour moves this share of its distance to the centre line;
# the kernel's radius is SLIM_RADIUS of the face's half-width.
MAX_SLIMMING, SLIM_RADIUS = 0.12, 0.45
# Eye enlarging at 100: magnification at the eye's centre 1 / (1 - MAX_EYE_BULGE); the
# ellipse's half-width is EYE_REACH eye half-widths, its half-height the brow gap's
# EYE_BROW_SHARE, and both stop short of the face's edge by the same share.
MAX_EYE_BULGE, EYE_REACH, EYE_BROW_SHARE = 0.25, 1.45, 0.90
FULL_STRENGTH = 100.0


def _jaw_weights() -> torch.Tensor:
    """How far each JAW point moves, 0 at the ears and the chin's tip, most at the jaw's corners."""
    half = (len(JAW) - 1) // 2
    side = torch.linspace(0, 1, half + 1)[:-1]  # ear -> just before the chin
    profile = torch.sin(torch.pi * side) ** 1.5  # 0 at the ear, peaking at the middle of the way
    profile = profile * (1 - 0.35 * side)  # the cheeks a little less than the jaw's corner
    return torch.cat([profile, torch.zeros(1), profile.flip(0)])


class BeautyProgram(torch.nn.Module):
    def __init__(self, crop_px: int = FACE_CROP_PX):
        super().__init__()
        self.crop_px = crop_px
        index = lambda points: torch.tensor(points, dtype=torch.long)  # noqa: E731
        for name, points in (("oval", FACE_OVAL), ("right_eye", RIGHT_EYE), ("left_eye", LEFT_EYE),
                             ("right_brow", RIGHT_BROW), ("left_brow", LEFT_BROW), ("lips", LIPS),
                             ("nostrils", NOSTRILS), ("jaw", JAW)):
            self.register_buffer(f"{name}_index", index(points), persistent=False)
        shrink = [FOREHEAD_SHRINK if i in FOREHEAD else OVAL_SHRINK for i in FACE_OVAL]
        self.register_buffer("oval_shrink", torch.tensor(shrink).view(1, -1, 1), persistent=False)
        self.register_buffer("jaw_weight", _jaw_weights().view(1, -1, 1), persistent=False)
        self.register_buffer("mask_points", FuseProgram.cell_centres(crop_px // MASK_STRIDE, MASK_STRIDE), persistent=False)
        self.register_buffer("warp_points", FuseProgram.cell_centres(crop_px // WARP_STRIDE, WARP_STRIDE), persistent=False)
        full = torch.arange(crop_px, dtype=torch.float32)
        iy, ix = torch.meshgrid(full, full, indexing="ij")
        self.register_buffer("identity_grid", torch.stack([ix, iy]).view(1, 2, crop_px, crop_px), persistent=False)
        rgb_to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
        self.register_buffer("rgb_to_ycc", rgb_to_ycc, persistent=False)

    # ---- geometry -------------------------------------------------------------
    def points(self, mesh_xy: torch.Tensor, name: str) -> torch.Tensor:
        return mesh_xy.index_select(1, getattr(self, f"{name}_index"))

    def polygon_distance(self, polygon: torch.Tensor, size) -> torch.Tensor:
        """Signed distance (N, 1, C, C) on the mask grid, positive inside the polygon."""
        cells = size // MASK_STRIDE
        return signed_distance(FuseProgram.first_cells(self.mask_points, cells), polygon, cells)

    @staticmethod
    def face_width(mesh_xy: torch.Tensor, oval: torch.Tensor) -> torch.Tensor:
        """(N, 1, 1): the oval's width, the unit the effects' sizes are given in."""
        return (oval[..., 0].amax(1) - oval[..., 0].amin(1)).clamp_min(1.0).view(-1, 1, 1)

    # ---- masks ----------------------------------------------------------------
    def feature_ellipses(self, mesh_xy: torch.Tensor, width: torch.Tensor, cells) -> torch.Tensor:
        """(N, 1, C, C) on the mask grid: 1 on the eyes, brows, lips and nostrils (each an
        axis-aligned ellipse around its contour, grown by FEATURE_MARGIN), falling to 0
        over FEATURE_RAMP. Ellipses cost a few operations per cell; polygons' distances
        cost one per cell and edge (most of this program's time when they were used)."""
        p = FuseProgram.first_cells(self.mask_points, cells)  # (1, P, 2)
        px, py = p[..., 0], p[..., 1]  # (1, P)
        margin, ramp = FEATURE_MARGIN * width.view(-1, 1), FEATURE_RAMP * width.view(-1, 1)
        features = None
        for name in ("right_eye", "left_eye", "right_brow", "left_brow", "lips", "nostrils"):
            contour = self.points(mesh_xy, name)
            low, high = contour.amin(1), contour.amax(1)  # (N, 2)
            centre, axes = 0.5 * (low + high), 0.5 * (high - low) + margin
            rx, ry = axes[:, 0:1], axes[:, 1:2]
            r = torch.sqrt(((px - centre[:, 0:1]) / rx) ** 2 + ((py - centre[:, 1:2]) / ry) ** 2 + 1e-9)
            near = (((1 - r) * torch.minimum(rx, ry) + ramp) / ramp).clamp(0, 1)
            features = near if features is None else torch.maximum(features, near)
        return features.view(-1, 1, cells, cells)

    def skin_regions(self, small_ycc: torch.Tensor, mesh_xy: torch.Tensor, width: torch.Tensor, size
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(skin, reach) on the mask grid: skin is the face's skin (the smoothing and the
        colour statistics), reach the skin the colour effects touch, fading out down the
        neck and over the ears. small_ycc: the image on the mask grid."""
        w = width.view(-1, 1, 1, 1)
        oval = self.points(mesh_xy, "oval")
        centre = mesh_xy[:, 4:5]
        face = self.polygon_distance(centre + (oval - centre) * self.oval_shrink, size)
        inside = ((face + 0.5 * OVAL_RAMP * w) / (OVAL_RAMP * w)).clamp(0, 1)
        reach = (1 + face / (NECK_REACH * w)).clamp(0, 1)
        reach = reach * reach * (3 - 2 * reach)
        # Beyond the oval only below the eyes (neck, ears, jaw), never up into the hair.
        cells = size // MASK_STRIDE
        eye_y = 0.5 * (self.points(mesh_xy, "right_eye")[..., 1].mean(1) + self.points(mesh_xy, "left_eye")[..., 1].mean(1))
        row_y = FuseProgram.first_cells(self.mask_points, cells)[..., 1].view(1, 1, cells, cells)
        below = ((row_y - eye_y.view(-1, 1, 1, 1)) / (0.1 * w)).clamp(0, 1)
        reach = torch.where(face >= 0, reach, reach * below)
        clear = 1 - self.feature_ellipses(mesh_xy, width, cells)
        skin_colour = self.skin_colour(small_ycc, inside * clear)
        return inside * clear * skin_colour, reach * clear * skin_colour

    @staticmethod
    def skin_colour(ycc: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """1 where the colour is the face's skin's: near its chroma and not dark."""
        mean, std = FuseProgram.weighted_stats(ycc, region)
        spread = std[:, 1:3].clamp_min(SKIN_CHROMA_MIN_SPREAD)
        chroma = torch.sqrt((((ycc[:, 1:3] - mean[:, 1:3]) / spread) ** 2).sum(1, keepdim=True))
        off_colour = ((chroma - SKIN_CHROMA_FROM) / (SKIN_CHROMA_TO - SKIN_CHROMA_FROM)).clamp(0, 1)
        darkness = ycc[:, 0:1] / mean[:, 0:1].clamp_min(1e-3)
        dark = ((SKIN_DARK_FROM - darkness) / (SKIN_DARK_FROM - SKIN_DARK_TO)).clamp(0, 1)
        return 1 - torch.maximum(off_colour, dark)

    # ---- colour effects -------------------------------------------------------
    @staticmethod
    def box(x: torch.Tensor, radius: int) -> torch.Tensor:
        k = 2 * radius + 1
        x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)
        return F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)

    def guided_smooth(self, image: torch.Tensor, radius: int) -> torch.Tensor:
        """Self-guided filter of one channel (He et al.), its coefficients made at half
        size: flat texture goes to its local mean, edges stronger than SMOOTH_EPS stay."""
        size = image.shape[-1]
        half = F.avg_pool2d(image, 2)
        mean = self.box(half, radius)
        var = (self.box(half * half, radius) - mean * mean).clamp_min(0)
        a = var / (var + SMOOTH_EPS)
        b = mean - a * mean
        a, b = (F.interpolate(self.box(x, radius), size=(size, size), mode="bilinear", align_corners=False)
                for x in (a, b))
        return a * image + b

    # ---- warps ------------------------------------------------------------------
    def jaw_field(self, mesh_xy: torch.Tensor, width: torch.Tensor, amount: torch.Tensor, grid: torch.Tensor
                  ) -> torch.Tensor:
        """Displacement (N, 2, P) at grid points (1, 2, P) that slims the jaw by `amount` (N, 1, 1)."""
        jaw = self.points(mesh_xy, "jaw")  # (N, J, 2)
        top, bottom = mesh_xy[:, NOSE_BRIDGE : NOSE_BRIDGE + 1], mesh_xy[:, CHIN : CHIN + 1]
        axis = bottom - top
        t = ((jaw - top) * axis).sum(-1, keepdim=True) / (axis * axis).sum(-1, keepdim=True).clamp_min(1e-6)
        inward = top + t * axis - jaw  # to the centre line
        move = inward * (self.jaw_weight * MAX_SLIMMING) * amount  # (N, J, 2)
        radius = SLIM_RADIUS * 0.5 * width  # (N, 1, 1)
        dx = grid[:, 0:1].transpose(1, 2) - jaw[..., 0:1].transpose(1, 2)  # (N, P, J)
        dy = grid[:, 1:2].transpose(1, 2) - jaw[..., 1:2].transpose(1, 2)
        t2 = ((dx * dx + dy * dy) / (radius * radius)).clamp(max=1.0)
        kernel = (1 - t2) ** 2  # (N, P, J)
        total = kernel.sum(-1, keepdim=True).clamp_min(1.0)
        return torch.matmul(kernel / total, move).transpose(1, 2)  # (N, 2, P)

    def eye_field(self, mesh_xy: torch.Tensor, amount: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Displacement (N, 2, P) that magnifies both eyes by `amount` (N, 1, 1)."""
        oval = self.points(mesh_xy, "oval")
        field = None
        for eye, brow in (("right_eye", "right_brow"), ("left_eye", "left_brow")):
            contour = self.points(mesh_xy, eye)
            centre = contour.mean(1, keepdim=True)  # (N, 1, 2)
            half_width = 0.5 * (contour[..., 0].amax(1) - contour[..., 0].amin(1)).view(-1, 1, 1)
            brow_gap = (centre[..., 1:2] - self.points(mesh_xy, brow)[..., 1].amax(1).view(-1, 1, 1)).clamp_min(1.0)
            edge_gap = (oval - centre).pow(2).sum(-1).sqrt().amin(1).view(-1, 1, 1)
            rx = torch.minimum(EYE_REACH * half_width, EYE_BROW_SHARE * edge_gap)
            ry = torch.minimum(EYE_BROW_SHARE * brow_gap, rx)
            dx = grid[:, 0:1] - centre[..., 0:1]  # (N, 1, P)
            dy = grid[:, 1:2] - centre[..., 1:2]
            t2 = ((dx / rx) ** 2 + (dy / ry) ** 2).clamp(max=1.0)
            # Sampling nearer the centre magnifies; flat inside (the whole eye grows
            # alike), a quick fall near the ellipse's edge.
            pull = MAX_EYE_BULGE * amount * (1 - t2 * t2) ** 2
            d = torch.cat([dx, dy], 1) * pull
            field = d if field is None else field + d
        return field

    def sample(self, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Bilinear lookup (as four gathers: ONNX Runtime's GridSample is slow on CPU)."""
        n, size = image.shape[0], image.shape[-1]
        xy = positions.reshape(n, 2, -1).clamp(0, size - 1)
        corner = xy.floor().clamp(max=size - 2)
        frac = xy - corner
        index = (corner[:, 1:2] * size + corner[:, 0:1]).to(torch.int64).expand(n, 3, -1)
        flat = image.reshape(n, 3, -1)
        at = lambda offset: torch.gather(flat, 2, index + offset)  # noqa: E731
        fx, fy = frac[:, 0:1], frac[:, 1:2]
        top = at(0) + (at(1) - at(0)) * fx
        bottom = at(size) + (at(size + 1) - at(size)) * fx
        return (top + (bottom - top) * fy).reshape(n, 3, size, size)

    # ---- the program ------------------------------------------------------------
    def apply(self, image: torch.Tensor, mesh_xy: torch.Tensor, strength: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (N, 3, S, S) in 0..1, mesh_xy (N, 468, 2) in its pixels, strength (N, 4)
        in 0..1 -> (image, changed (N, 1, S, S) in 0..1)."""
        size = image.shape[-1]
        cells = size // MASK_STRIDE
        s = strength.clamp(0, 1).view(-1, 4, 1, 1)
        smoothing, brightening, slimming, enlarging = s[:, 0:1], s[:, 1:2], s[:, 2:3], s[:, 3:4]
        width = self.face_width(mesh_xy, self.points(mesh_xy, "oval"))
        luma = (image * self.rgb_to_ycc[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
        small_ycc = FuseProgram.convert(F.avg_pool2d(image, MASK_STRIDE), self.rgb_to_ycc)
        skin, reach = self.skin_regions(small_ycc, mesh_xy, width, size)
        # Brightening's evening: part of a patch's shortfall from the skin's mean luma.
        small_luma = small_ycc[:, 0:1]
        mean, _ = FuseProgram.weighted_stats(small_luma, skin)
        local = self.box(small_luma * skin, 2) / self.box(skin, 2).clamp_min(1e-3)
        shortfall = (mean - local).clamp_min(0)

        # The warps: a displacement on the warp grid; pixel p takes image(p - d). A lookup
        # at a displacement of exactly 0 returns the pixel itself, bit for bit, so the
        # lookup needs no blend with the image; `moved` marks the warped cells for the mask.
        warp_cells = size // WARP_STRIDE
        grid = FuseProgram.first_cells(self.warp_points, warp_cells).transpose(1, 2)  # (1, 2, P)
        field = self.jaw_field(mesh_xy, width, slimming.view(-1, 1, 1), grid) \
            + self.eye_field(mesh_xy, enlarging.view(-1, 1, 1), grid)
        field = field.reshape(-1, 2, warp_cells, warp_cells)
        moved = (field.abs().sum(1, keepdim=True) > 0).to(field.dtype)

        # Upsampled one by one: slicing channels off one upsampled tensor copies them.
        def full(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

        field, moved, skin, reach, shortfall = full(field), full(moved), full(skin), full(reach), full(shortfall)

        # Both colour effects change luma only, as one grey added to R, G and B: the hue
        # (set by their differences) stays exactly, and the work is on one channel.
        smooth_weight = (MAX_SMOOTHING * smoothing) * skin
        smoothed = luma + smooth_weight * (self.guided_smooth(luma, SMOOTH_RADIUS) - luma)
        bright_weight = brightening * reach
        lift = MAX_LIFT * smoothed * (1 - smoothed) + MAX_EVENING * shortfall
        headroom = 1 - image.amax(1, keepdim=True) - (smoothed - luma)  # never past white in any channel
        image = image + ((smoothed - luma) + bright_weight * torch.minimum(lift, headroom).clamp_min(0))
        changed = torch.maximum(smooth_weight, bright_weight)

        image = self.sample(image, self.identity_grid[:, :, :size, :size] - field)
        return image, torch.maximum(changed, moved).clamp(0, 1)

    def forward(self, faces: torch.Tensor, face_masks: torch.Tensor, face_meshes: torch.Tensor,
                user_meshes: torch.Tensor, profile_degree: torch.Tensor, beauty: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, count, size = faces.shape[0], faces.shape[1], faces.shape[2]
        image = faces.reshape(-1, size, size, 3).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        mesh = face_meshes.reshape(-1, MESH_POINTS, 3)
        # The poster's face geometry, as fuse makes it (see the module docstring).
        to_working = size / self.crop_px
        user = user_meshes.reshape(-1, MESH_POINTS, 3)
        user = torch.cat([(user[..., :2] + 0.5) * to_working - 0.5, user[..., 2:] * to_working], -1)
        shape = (profile_degree.reshape(batch, 1) * 0.01).clamp(0, 1).expand(batch, count).reshape(-1, 1, 1)
        geometry = mesh + shape * (FuseProgram.pose_onto(user, mesh) - mesh)
        beauty = torch.where(beauty == beauty, beauty, torch.zeros_like(beauty))  # NaN: off
        strength = (beauty.reshape(batch, 1, 4) * (1.0 / FULL_STRENGTH)).expand(batch, count, 4).reshape(-1, 4)
        out, changed = self.apply(image, geometry[..., :2], strength)
        faces_u8 = (out.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1)
        masks = torch.maximum(face_masks.reshape(-1, 1, size, size).float(), (changed * 255.0 + 0.5).floor())
        return faces_u8.reshape(batch, count, size, size, 3), masks.to(torch.uint8).reshape(batch, count, size, size)


def beauty_onnx(module: BeautyProgram, path: Path) -> onnx.ModelProto:
    size = min(WORKING_CROP_PX)  # traced below the largest size, so that no size is baked in
    faces = torch.zeros(2, 1, size, size, 3, dtype=torch.uint8)
    masks = torch.zeros(2, 1, size, size, dtype=torch.uint8)
    meshes = torch.zeros(2, 1, MESH_POINTS, 3)
    example = (faces, masks, meshes, meshes, torch.zeros(2, 1), torch.zeros(2, 4))
    axes = batch_and_faces_axes(("faces", "face_masks", "face_meshes", "user_meshes", *OUTPUT_NAMES))
    axes.update({"profile_degree": {0: "batch"}, "beauty": {0: "batch"}})
    for name in ("faces", "face_masks", *OUTPUT_NAMES):
        axes[name].update({2: "size", 3: "size"})
    return onnx_from_module(module, example, INPUT_NAMES, OUTPUT_NAMES, axes, path, opset=BEAUTY_OPSET)
