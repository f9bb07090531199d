"""Beauty on a real tritonserver: on posters (face_fusion) and on photos (face_beautify)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image
from tritonclient.utils import InferenceServerException

from facefuse.errors import Reason, reason_from_message
from facefuse.triton_client import PHOTO_OUTPUT, POSTER_OUTPUT, FuseOptions, beautify_inputs, fusion_inputs, poster_bytes
from facefuse.vision.beauty import BeautyOptions
from photo_bytes import encoded, rgb_of

TEMPLATE = "hopper-portrait"


def image_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def poster(client, photo: bytes, beauty: BeautyOptions) -> np.ndarray:
    options = FuseOptions(output_format="png", add_label=False, beauty=beauty)
    result = client.infer("face_fusion", fusion_inputs(photo, TEMPLATE, 0, options), outputs=POSTER_OUTPUT)
    return image_of(poster_bytes(result))


def beautified(client, photo: bytes, beauty: BeautyOptions, face_index: int = -1, **options) -> np.ndarray:
    options = {"output_format": "png", "add_label": False, **options}
    result = client.infer("face_beautify", beautify_inputs(photo, beauty, face_index, **options), outputs=PHOTO_OUTPUT)
    return image_of(bytes(result.as_numpy("photo").reshape(-1)[0]))


def texture(rgb: np.ndarray, where: np.ndarray) -> float:
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.var((y - cv2.GaussianBlur(y, (0, 0), 2.0))[where]))


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=-1)


def far_from(region: np.ndarray, margin_px: int) -> np.ndarray:
    return ~cv2.dilate(region.astype(np.uint8), np.ones((2 * margin_px + 1,) * 2, np.uint8)).astype(bool)


def test_a_poster_with_beauty_at_zero_is_the_poster_without_beauty(triton_client, astronaut):
    off = poster(triton_client, astronaut, BeautyOptions())
    default = image_of(poster_bytes(triton_client.infer(
        "face_fusion", fusion_inputs(astronaut, TEMPLATE, 0, FuseOptions(output_format="png", add_label=False)),
        outputs=POSTER_OUTPUT)))
    assert np.array_equal(off, default)


def test_beauty_on_a_poster_smooths_and_brightens_the_fused_face_and_nothing_far_from_it(triton_client, astronaut,
                                                                                       template_store):
    template = template_store.load(TEMPLATE).image
    off = poster(triton_client, astronaut, BeautyOptions())
    smoothed = poster(triton_client, astronaut, BeautyOptions(smoothing=80))
    brightened = poster(triton_client, astronaut, BeautyOptions(brightening=60))
    face = changed(off, template)  # what fusion changed: the fused face
    # The neck's falloff reaches a little beyond the fused face; the rest is the template's.
    for on in (smoothed, brightened):
        assert changed(on, off)[far_from(face, 40)].sum() == 0
    core = cv2.erode(face.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    luma = lambda rgb: rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    assert luma(brightened)[core].mean() > luma(off)[core].mean() + 2
    assert texture(smoothed, core) < 0.8 * texture(off, core)


def test_beautify_at_zero_returns_the_photo_bit_for_bit(triton_client, astronaut):
    photo = rgb_of(astronaut)
    assert np.array_equal(beautified(triton_client, encoded(photo, "PNG"), BeautyOptions()), photo)


def test_beautify_changes_the_face_and_leaves_the_background(triton_client, astronaut):
    photo = rgb_of(astronaut)
    out = beautified(triton_client, astronaut, BeautyOptions.all_at(70))
    region = changed(out, photo)
    assert 2_000 < region.sum() < 0.25 * region.size  # a face's worth of pixels, not the photo
    assert not region[:, :120].any() and not region[:, -120:].any()  # her hair's sides, the flag, the background
    core = cv2.erode(region.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert texture(out, core) < texture(photo, core)


def test_beautify_keeps_the_size_and_labels_by_default(triton_client, grace_hopper):
    photo = rgb_of(grace_hopper)
    labelled = beautified(triton_client, grace_hopper, BeautyOptions(smoothing=50), add_label=True)
    plain = beautified(triton_client, grace_hopper, BeautyOptions(smoothing=50))
    assert labelled.shape == plain.shape == photo.shape
    assert changed(labelled, plain).any()


def test_beautify_adjusts_every_face_or_only_the_chosen_one(triton_client, group_photo):
    photo = rgb_of(group_photo)
    every = changed(beautified(triton_client, group_photo, BeautyOptions(smoothing=80, brightening=80)), photo)
    one = changed(beautified(triton_client, group_photo, BeautyOptions(smoothing=80, brightening=80), face_index=0), photo)
    faces_changed = cv2.connectedComponents(cv2.dilate(every.astype(np.uint8), np.ones((9, 9), np.uint8)))[0] - 1
    assert faces_changed >= 4
    assert one.any() and one.sum() < every.sum() / 3
    assert not (one & ~every).any()
    columns = np.nonzero(one.any(0))[0]
    assert columns.max() < photo.shape[1] / 2  # face 0 is the leftmost


def test_beautify_refuses_a_face_index_the_photo_does_not_have(triton_client, astronaut):
    with pytest.raises(InferenceServerException) as info:
        beautified(triton_client, astronaut, BeautyOptions(smoothing=50), face_index=3)
    assert reason_from_message(info.value.message()) is Reason.INVALID_ARGUMENT
    assert "faces 0..0" in info.value.message()


def test_a_bad_photo_in_a_beautify_batch_fails_only_its_own_request(triton_client, astronaut, coffee):
    photos = [astronaut, coffee, b"junk", astronaut, encoded(rgb_of(astronaut)[:, 225:]), astronaut] * 2

    def call(photo):
        try:
            beautified(triton_client, photo, BeautyOptions.all_at(40))
            return "ok"
        except InferenceServerException as exc:
            return reason_from_message(exc.message())

    with ThreadPoolExecutor(max_workers=len(photos)) as pool:
        outcomes = list(pool.map(call, photos))
    assert outcomes == ["ok", Reason.NO_FACE_DETECTED, Reason.IMAGE_DECODE_FAILED, "ok", Reason.FACE_EXCEEDS_BORDER, "ok"] * 2
