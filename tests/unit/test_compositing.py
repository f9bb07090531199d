import cv2
import numpy as np

from facefuse.vision.compositing import draw_label, paste_faces
from facefuse.vision.detail import match_template_detail, measure_template_face

CROP = 64


def crop_at(x: float, y: float, scale: float = 1.0) -> np.ndarray:
    """Affine template -> crop for a crop whose origin sits at (x, y) of the template."""
    return np.array([[[scale, 0, -x * scale], [0, scale, -y * scale]]], np.float32)


def test_pasting_keeps_the_template_exactly_where_the_mask_is_zero():
    rng = np.random.default_rng(0)
    template = rng.integers(0, 256, (120, 100, 3), np.uint8)
    face = np.full((1, CROP, CROP, 3), 200, np.uint8)
    mask = np.zeros((1, CROP, CROP), np.uint8)
    mask[0, 16:48, 16:48] = 255
    poster = paste_faces(template, face, mask, crop_at(20, 30), match_detail=False)
    inside = poster[30 + 20 : 30 + 44, 20 + 20 : 20 + 44]
    assert (inside == 200).all()
    untouched = np.ones(template.shape[:2], bool)
    untouched[30 + 15 : 30 + 49, 20 + 15 : 20 + 49] = False  # the mask's edge, resampled
    assert (poster[untouched] == template[untouched]).all()


def test_a_half_mask_blends_half_way_and_rounds():
    template = np.full((80, 80, 3), 100, np.uint8)
    face = np.full((1, CROP, CROP, 3), 201, np.uint8)
    mask = np.full((1, CROP, CROP), 128, np.uint8)
    poster = paste_faces(template, face, mask, crop_at(8, 8), match_detail=False)
    expected = round(100 + (201 - 100) * 128 / 255)
    assert (poster[30:50, 30:50] == expected).all()


def test_a_crop_reaching_past_the_template_edge_is_clipped():
    template = np.zeros((50, 50, 3), np.uint8)
    face = np.full((1, CROP, CROP, 3), 255, np.uint8)
    mask = np.full((1, CROP, CROP), 255, np.uint8)
    poster = paste_faces(template, face, mask, crop_at(20, 20))
    assert poster.shape == template.shape
    assert (poster[25:, 25:] == 255).all() and (poster[:15, :15] == 0).all()


def test_the_label_darkens_a_corner_band_and_leaves_the_input_alone():
    image = np.full((300, 400, 3), 180, np.uint8)
    labelled = draw_label(image)
    assert (image == 180).all()
    assert labelled[-5, -5].max() < 180 and (labelled[:100, :100] == 180).all()


def textured(seed: int, sigma: float, blur: float = 0.0, size: int = 160) -> np.ndarray:
    """Mid-grey with Gaussian texture of `sigma` grey levels, optionally blurred (a soft photo)."""
    grey = 128 + sigma * np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    if blur:
        grey = cv2.GaussianBlur(grey, (0, 0), blur)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1)


def finest_typical(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.median(np.abs(grey - cv2.blur(grey, (3, 3)))[8:-8, 8:-8]))


FULL = np.full((160, 160), 255.0, np.float32)
EVERYWHERE = np.ones((160, 160), bool)


def matched(face: np.ndarray, template: np.ndarray) -> np.ndarray:
    """face's detail matched to template's, the whole image being the inner face."""
    return match_template_detail(face, FULL, EVERYWHERE, measure_template_face(template, EVERYWHERE))


def test_a_soft_face_gets_the_template_faces_fine_detail_back():
    template, soft = textured(1, 6), textured(2, 6, blur=1.2)
    result = matched(soft, template)
    before, after, target = finest_typical(soft), finest_typical(result), finest_typical(template)
    assert before < 0.5 * target
    assert 0.8 * target < after < 1.25 * target


def test_a_face_as_detailed_as_the_template_and_a_flat_templates_face_are_left_alone():
    face = textured(3, 10)
    assert (matched(face, textured(4, 6)) == face).all()
    # A comic's face: flat colour with a few inked outlines. Its typical fine detail is
    # none, so a soft photo face gets neither gain nor grain (no speckle on a comic).
    comic = np.full((160, 160, 3), 200, np.uint8)
    cv2.circle(comic, (80, 80), 50, (0, 0, 0), 2)
    soft = textured(5, 12, blur=1.5)
    assert (matched(soft, comic) == soft).all()


def test_faint_noise_is_not_amplified_however_detailed_the_template():
    template = textured(6, 40)
    faint = textured(7, 0.6)  # below the coring level: noise, not detail
    result = matched(faint, template)
    # Grain makes up the template's level; amplified (5x) on top of it, it would exceed it.
    assert finest_typical(result) <= 1.25 * finest_typical(template)
    difference = result.astype(np.float32) - faint
    assert abs(float(np.corrcoef(difference[..., 0].ravel(), faint[..., 0].ravel().astype(np.float32))[0, 1])) < 0.1


def test_a_painting_s_texture_beyond_photo_grain_is_made_up_with_its_own_texture():
    painting = textured(15, 30, blur=0.6)  # brush texture far above a photo's grain
    cv2.circle(painting, (80, 80), 40, (10, 10, 10), 3)  # and one strong outline
    soft = textured(16, 2, blur=1.5)
    result = matched(soft, painting)
    assert finest_typical(result) > 0.55 * finest_typical(painting)  # noise alone stops at 5 levels: 0.45
    added = result[..., 0].astype(np.float32) - soft[..., 0]
    texture = painting[..., 0].astype(np.float32) - cv2.blur(painting[..., 0].astype(np.float32), (3, 3))
    away = np.ones((160, 160), bool)
    cv2.circle(away.view(np.uint8), (80, 80), 40, 0, 9)  # clear of the outline
    assert np.corrcoef(added[away], texture[away])[0, 1] > 0.3  # the painting's texture (noise: 0)
    on_outline = np.zeros((160, 160), np.uint8)
    cv2.circle(on_outline, (80, 80), 40, 1, 3)
    assert np.abs(added[on_outline > 0]).mean() < np.abs(added[away]).mean()  # its outline is not drawn


def test_with_detail_matching_the_template_stays_exact_outside_the_mask():
    rng = np.random.default_rng(10)
    template = rng.integers(0, 256, (200, 200, 3), np.uint8)
    face = np.repeat(textured(11, 8, blur=1.5, size=CROP)[None], 1, 0)
    mask = np.zeros((1, CROP, CROP), np.uint8)
    mask[0, 8:56, 8:56] = 255
    poster = paste_faces(template, face, mask, crop_at(60, 70, scale=0.5))
    changed = np.any(poster != template, axis=-1)
    assert changed.any()
    outside = np.ones(template.shape[:2], bool)
    outside[70 + 14 : 70 + 114, 60 + 14 : 60 + 114] = False  # the mask (crop 8..56 at half scale), resampled
    assert not changed[outside].any()


def test_on_a_line_art_template_the_faces_own_lines_are_inked_in_the_templates_ink():
    comic = np.full((160, 160, 3), (230, 200, 170), np.uint8)  # flat skin...
    cv2.ellipse(comic, (80, 80), (60, 70), 0, 0, 360, (10, 10, 40), 3)  # ...inside inked outlines
    cv2.line(comic, (50, 60), (110, 60), (10, 10, 40), 3)
    face = textured(12, 2, blur=1.0)
    cv2.line(face, (40, 100), (120, 100), (70, 70, 70), 3)  # the face's own line (a mouth)
    inked = matched(face, comic)
    on_line, off_line = inked[100, 60:100], inked[130, 60:100]
    assert on_line.mean() < face[100, 60:100].mean() - 20  # darker, toward the ink...
    assert on_line[:, 2].mean() > on_line[:, 0].mean()  # ...in the ink's (blue-black) colour
    assert np.abs(off_line.astype(int) - face[130, 60:100]).max() <= 2  # flat skin stays
    assert not (inked[60, 60:100] < 60).all()  # the template's own line is not drawn


def test_only_line_art_templates_are_inked():
    comic = np.full((160, 160, 3), (230, 200, 170), np.uint8)
    cv2.ellipse(comic, (80, 80), (60, 70), 0, 0, 360, (10, 10, 40), 3)
    assert measure_template_face(comic, EVERYWHERE).ink_share > 0
    # Photos and paintings: texture everywhere, some of it dark lines, none of it line art.
    photo = textured(14, 10, blur=0.7)
    cv2.line(photo, (40, 100), (120, 100), (20, 20, 20), 3)
    assert measure_template_face(photo, EVERYWHERE).ink_share == 0



def test_on_a_painting_the_eyes_keep_the_fused_faces_own_detail_and_on_a_photo_they_are_matched():
    # A face 100 px between the eyes, upright in a 400 px template, at the canonical crop's keypoints.
    from facefuse.vision.alignment import CANONICAL_KEYPOINTS, face_roi
    from facefuse.vision.detail import template_face_detail

    crop_px = 256
    scale = 100 / (crop_px * float(np.linalg.norm(CANONICAL_KEYPOINTS[1] - CANONICAL_KEYPOINTS[0])))
    keypoints = CANONICAL_KEYPOINTS * crop_px * scale + 70
    affine = np.array([[1 / scale, 0, -70 / scale], [0, 1 / scale, -70 / scale]], np.float32)
    roi = face_roi((400, 400), affine, crop_px)  # detail.face covers it
    left_eye, right_eye, nose = keypoints[:3]
    forehead = (left_eye + right_eye) / 2 + [0, -0.45 * 100]

    def weights(template: np.ndarray) -> list[float]:
        face = template_face_detail(template, affine, crop_px).face
        return [float(face[int(round(y)) - roi.y0, int(round(x)) - roi.x0]) for x, y in (left_eye, right_eye, nose, forehead)]

    painting, photo = textured(8, 20, size=400), textured(8, 5, size=400)  # brushwork; a photo's grain
    assert max(weights(painting)[:2]) < 0.05 and min(weights(painting)[2:]) > 0.9
    assert min(weights(photo)) > 0.9
