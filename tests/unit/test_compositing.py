import numpy as np

from facefuse.vision.compositing import draw_label, paste_faces

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
    poster = paste_faces(template, face, mask, crop_at(20, 30))
    inside = poster[30 + 20 : 30 + 44, 20 + 20 : 20 + 44]
    assert (inside == 200).all()
    untouched = np.ones(template.shape[:2], bool)
    untouched[30 + 15 : 30 + 49, 20 + 15 : 20 + 49] = False  # the mask's edge, resampled
    assert (poster[untouched] == template[untouched]).all()


def test_a_half_mask_blends_half_way_and_rounds():
    template = np.full((80, 80, 3), 100, np.uint8)
    face = np.full((1, CROP, CROP, 3), 201, np.uint8)
    mask = np.full((1, CROP, CROP), 128, np.uint8)
    poster = paste_faces(template, face, mask, crop_at(8, 8))
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
