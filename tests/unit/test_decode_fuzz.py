"""The decode stage on hostile and mutated bytes: a typed reason, never INTERNAL.

Hypothesis generates arbitrary bytes and mutations of real photos (a few hundred per
run); `facefuse bench fuzz` runs the same generators at >= 10,000 inputs.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facefuse import samples
from facefuse.errors import FacefuseError, Reason
from facefuse.fuzz import hostile_images, mpo, mutate
from facefuse.stages.decode import DecodeParams, decode

PARAMS = DecodeParams(detector_input_px=320)
TYPED = {Reason.IMAGE_DECODE_FAILED, Reason.IMAGE_FORMAT_UNSUPPORTED, Reason.IMAGE_PIXELS_EXCEEDED,
         Reason.IMAGE_TOO_LARGE}


def photo() -> Image.Image:
    return Image.open(io.BytesIO(samples.astronaut())).convert("RGB")


def seeds_by_format() -> dict[str, bytes]:
    image = photo().resize((128, 128))
    out = {}
    for fmt in ("JPEG", "PNG", "WEBP", "BMP"):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


SEEDS = seeds_by_format()


def reason_of(data: bytes) -> Reason | None:
    """None when it decodes; the typed reason otherwise (anything else fails the test)."""
    try:
        decoded = decode(data, PARAMS)
    except FacefuseError as error:
        return error.reason
    assert decoded.image.ndim == 3 and decoded.image.shape[2] == 3
    return None


@pytest.mark.parametrize("name", sorted(hostile_images(Image.new("RGB", (8, 8)))))
def test_each_hostile_image_gets_a_typed_decode_reason(name):
    assert reason_of(hostile_images(photo())[name]) in TYPED


def test_an_mpo_from_a_phone_decodes_as_its_first_picture():
    image = photo()
    decoded = decode(mpo(image), PARAMS).image
    # The first picture is the photo; the second (mirrored) one is not what is read.
    assert np.abs(decoded.astype(int) - np.asarray(image, dtype=int)).mean() < 4


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_get_a_typed_reason(data):
    assert reason_of(data) in TYPED | {None}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(SEEDS)), seed=st.integers(0, 2**32 - 1))
def test_mutated_photos_decode_or_get_a_typed_reason(fmt, seed):
    assert reason_of(mutate(SEEDS[fmt], seed)) in TYPED | {None}


@settings(max_examples=100, deadline=None)
@given(fmt=st.sampled_from(sorted(SEEDS)), cut=st.integers(0, 10_000))
def test_truncated_photos_get_a_typed_reason(fmt, cut):
    data = SEEDS[fmt]
    assert reason_of(data[: min(cut, len(data) - 1)]) in TYPED | {None}
