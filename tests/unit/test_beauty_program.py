"""The beauty effects, measured on real faces (package photos, the built detector and mesh models)."""

import cv2
import numpy as np
import pytest
import torch

from facefuse.errors import OptionError
from facefuse.vision.beauty import BeautyOptions
from facefuse_build.beauty_program import (
    JAW, LEFT_BROW, LEFT_EYE, LIPS, RIGHT_BROW, RIGHT_EYE, SLIM_RADIUS, BeautyProgram,
)

STEPS = (0, 25, 50, 75, 100)
EFFECT_INDEX = {"smoothing": 0, "brightening": 1, "slimming": 2, "eye_enlarging": 3}


@pytest.fixture(scope="module")
def pipeline(settings):
    from facefuse.local_pipeline import LocalPipeline

    return LocalPipeline(settings, threads=1)


@pytest.fixture(scope="module", params=["astronaut", "grace_hopper"])
def face(request, pipeline):
    """(crop (384, 384, 3) uint8, mesh (468, 3)) of a real photo's face."""
    photo = request.getfixturevalue(request.param)
    user = pipeline.analyze_user(photo)
    return user.faces[0], user.meshes[0]


@pytest.fixture(scope="module")
def program():
    return BeautyProgram().eval()


def beautify(program, face, effect: str | None = None, value: float = 0.0, values=None):
    crop, mesh = face
    beauty = np.zeros((1, 4), np.float32)
    if values is not None:
        beauty[0] = values
    elif effect is not None:
        beauty[0, EFFECT_INDEX[effect]] = value
    meshes = torch.from_numpy(mesh)[None, None]
    with torch.no_grad():
        out, mask = program(torch.from_numpy(crop)[None, None], torch.zeros(1, 1, *crop.shape[:2], dtype=torch.uint8),
                            meshes, meshes, torch.zeros(1, 1), torch.from_numpy(beauty))
    return out[0, 0].numpy(), mask[0, 0].numpy()


def polygon_mask(mesh, *contours, shape=(384, 384), dilate_px=0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for contour in contours:
        cv2.fillPoly(mask, [np.round(mesh[list(contour), :2]).astype(np.int32)], 1)
    if dilate_px:
        mask = cv2.dilate(mask, np.ones((2 * dilate_px + 1,) * 2, np.uint8))
    return mask.astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def cheeks(face) -> np.ndarray:
    """Plain skin: the cheeks between the eyes' lower lids and the mouth's corners."""
    _, mesh = face
    return polygon_mask(mesh, (117, 118, 101, 36, 205, 187, 123), (346, 347, 330, 266, 425, 411, 352))


def texture_variance(rgb: np.ndarray, where: np.ndarray) -> float:
    y = luma(rgb)
    return float(np.var((y - cv2.GaussianBlur(y, (0, 0), 2.0))[where]))


def gradient_energy(rgb: np.ndarray, where: np.ndarray) -> float:
    y = luma(rgb)
    gx, gy = cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy)[where].sum())


def mesh_of(pipeline, crop: np.ndarray) -> np.ndarray:
    meshes, _ = pipeline.landmarks.run(None, {"faces": crop[None, None]})
    return meshes[0, 0]


@pytest.mark.parametrize("effect", list(EFFECT_INDEX))
def test_an_effect_at_zero_changes_no_pixel(program, face, effect):
    out, mask = beautify(program, face, effect, 0.0)
    assert np.array_equal(out, face[0])
    assert not mask.any()


def test_all_four_at_zero_change_no_pixel(program, face):
    out, mask = beautify(program, face, values=[0, 0, 0, 0])
    assert np.array_equal(out, face[0]) and not mask.any()


def test_smoothing_lowers_skin_texture_step_by_step_and_keeps_eye_and_lip_edges(program, face):
    skin = cheeks(face)
    features = polygon_mask(face[1], RIGHT_EYE, LEFT_EYE, LIPS)
    variances, energies = [], []
    for value in STEPS:
        out, _ = beautify(program, face, "smoothing", value)
        variances.append(texture_variance(out, skin))
        energies.append(gradient_energy(out, features))
    assert all(a > b for a, b in zip(variances, variances[1:])), variances
    assert variances[-1] < 0.6 * variances[0], variances
    assert min(energies) >= 0.97 * energies[0], energies


def test_smoothing_leaves_the_brows_and_the_hair_sharp(program, face):
    _, mesh = face
    brows = polygon_mask(mesh, RIGHT_BROW, LEFT_BROW)
    hair = np.zeros(brows.shape, bool)
    hair[: max(1, int(mesh[10, 1] - 25))] = True  # above the forehead's top
    out, _ = beautify(program, face, "smoothing", 100)
    assert gradient_energy(out, brows) >= 0.95 * gradient_energy(face[0], brows)
    assert gradient_energy(out, hair) >= 0.98 * gradient_energy(face[0], hair)


def test_brightening_lifts_skin_luma_step_by_step_keeping_its_hue(program, face):
    skin = cheeks(face)
    means = []
    for value in STEPS:
        out, _ = beautify(program, face, "brightening", value)
        means.append(float(luma(out)[skin].mean()))
    assert all(b > a for a, b in zip(means, means[1:])), means
    assert means[-1] - means[0] > 8, means  # grey levels, 0..255
    before = cv2.cvtColor(face[0], cv2.COLOR_RGB2HSV_FULL)[..., 0][skin].astype(np.float32)
    after = cv2.cvtColor(out, cv2.COLOR_RGB2HSV_FULL)[..., 0][skin].astype(np.float32)
    turned = np.abs((after - before + 128) % 256 - 128)  # hue on a 0..255 circle
    assert np.median(turned) <= 1.0 and turned.mean() < 2.5, (np.median(turned), turned.mean())


def test_brightening_changes_no_pixel_off_the_face_and_neck(program, face):
    _, mesh = face
    out, mask = beautify(program, face, "brightening", 100)
    # The face oval grown by half its width: the neck's falloff and a margin.
    oval = polygon_mask(mesh, (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                               377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109))
    width = int(np.ptp(mesh[:, 0]))
    background = ~cv2.dilate(oval.astype(np.uint8), np.ones((width // 2,) * 2, np.uint8)).astype(bool)
    assert np.array_equal(out[background], face[0][background])
    assert not mask[background].any()
    brows_and_eyes = polygon_mask(mesh, RIGHT_BROW, LEFT_BROW, RIGHT_EYE, LEFT_EYE)
    assert np.abs(out[brows_and_eyes].astype(int) - face[0][brows_and_eyes]).mean() < 1.0


def test_slimming_narrows_the_jaw_step_by_step_and_leaves_the_background_beyond_its_reach(program, face, pipeline):
    _, mesh = face
    widths = []
    for value in STEPS:
        out, _ = beautify(program, face, "slimming", value)
        found = mesh_of(pipeline, out)
        widths.append(float(np.linalg.norm(found[172, :2] - found[397, :2])))
    assert all(b < a for a, b in zip(widths, widths[1:])), widths
    assert widths[-1] < 0.985 * widths[0], widths
    # Nothing further from the jaw than its kernel's reach (plus a mask cell) moves.
    out, mask = beautify(program, face, "slimming", 100)
    half_width = np.ptp(mesh[:, 0]) / 2
    reach = SLIM_RADIUS * half_width + 12
    yy, xx = np.mgrid[:384, :384]
    jaw = mesh[list(JAW), :2]
    distance = np.min(np.hypot(xx[..., None] - jaw[:, 0], yy[..., None] - jaw[:, 1]), -1)
    beyond = distance > reach
    assert np.array_equal(out[beyond], face[0][beyond])
    assert not mask[beyond].any()


def eye_opening(rgb: np.ndarray, mesh, eye) -> float:
    """The eye's height between the lids, in pixels: the dark (iris, lashes) part of the
    luma profile down a band through the eye's middle, as an area over its depth."""
    points = mesh[list(eye), :2]
    centre, half_width = points.mean(0), np.ptp(points[:, 0]) / 2
    band = rgb[int(centre[1] - half_width):int(centre[1] + half_width),
               int(centre[0] - 0.3 * half_width):int(centre[0] + 0.3 * half_width)]
    profile = luma(band).mean(1)
    skin = np.median(np.concatenate([profile[:3], profile[-3:]]))
    return float(np.clip(skin - profile, 0, None).sum() / (skin - profile.min()))


def test_eye_enlarging_opens_the_eyes_step_by_step_and_never_moves_the_brows(program, face):
    _, mesh = face
    openings = []
    for value in STEPS:
        out, _ = beautify(program, face, "eye_enlarging", value)
        openings.append(eye_opening(out, mesh, RIGHT_EYE) + eye_opening(out, mesh, LEFT_EYE))
    assert all(b > a for a, b in zip(openings, openings[1:])), openings
    assert openings[-1] > 1.03 * openings[0], openings
    brows = polygon_mask(mesh, RIGHT_BROW, LEFT_BROW)
    assert np.array_equal(out[brows], face[0][brows])


def test_all_four_at_full_strength_keep_the_face_where_it_was(program, face, pipeline):
    """Still the same face: the mesh found on the result lies within a few pixels of the original's."""
    out, _ = beautify(program, face, values=[100, 100, 100, 100])
    found = mesh_of(pipeline, out)
    shift = np.linalg.norm(found[:, :2] - face[1][:, :2], axis=1)
    assert np.median(shift) < 4.0, np.median(shift)


def test_each_face_of_a_batch_gets_its_own_strengths(program, face):
    crop, mesh = face
    crops = torch.from_numpy(np.stack([crop, crop]))[:, None]
    meshes = torch.from_numpy(np.stack([mesh, mesh]))[:, None]
    beauty = torch.tensor([[0, 0, 0, 0], [60, 60, 60, 60]], dtype=torch.float32)
    with torch.no_grad():
        out, _ = program(crops, torch.zeros(2, 1, 384, 384, dtype=torch.uint8), meshes, meshes, torch.zeros(2, 1), beauty)
    assert np.array_equal(out[0, 0].numpy(), crop)
    assert np.array_equal(out[1, 0].numpy(), beautify(program, face, values=[60, 60, 60, 60])[0])


def test_the_cpu_stage_runs_the_program_only_for_requests_that_ask_for_beauty(program, face):
    from facefuse.stages.beauty import run_where_asked

    crop, mesh = face
    feeds = {
        "faces": np.stack([crop, crop, crop])[:, None], "face_masks": np.zeros((3, 1, 384, 384), np.uint8),
        "face_meshes": np.stack([mesh] * 3)[:, None], "user_meshes": np.stack([mesh] * 3)[:, None],
        "profile_degree": np.zeros((3, 1), np.float32),
        "beauty": np.array([[0, 0, 0, 0], [70, 0, 40, 0], [0, 0, 0, 0]], np.float32),
    }
    ran = []

    def run(batch):
        ran.append(len(batch["beauty"]))
        with torch.no_grad():
            out = program(*[torch.from_numpy(batch[n]) for n in
                            ("faces", "face_masks", "face_meshes", "user_meshes", "profile_degree", "beauty")])
        return [o.numpy() for o in out]

    faces, masks = run_where_asked(feeds, ["beautified_faces", "beautified_masks"], run)
    assert ran == [1]
    assert np.array_equal(faces[0, 0], crop) and np.array_equal(faces[2, 0], crop) and not masks[[0, 2]].any()
    assert np.array_equal(faces[1, 0], beautify(program, face, values=[70, 0, 40, 0])[0])


@pytest.mark.parametrize("field", ["smoothing", "brightening", "slimming", "eye_enlarging"])
@pytest.mark.parametrize("value", [-1.0, 100.5, float("nan")])
def test_beauty_values_out_of_range_are_refused_with_the_name_and_range(field, value):
    with pytest.raises(OptionError, match=f"beauty {field} .* out of range; use 0..100"):
        BeautyOptions(**{field: value}).validated()


def test_beauty_options_default_to_off():
    assert BeautyOptions().off and not BeautyOptions(slimming=1).off
    assert BeautyOptions.all_at(50).tensor().tolist() == [[50, 50, 50, 50]]
