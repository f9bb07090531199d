"""Beauty through the real gateway: FuseOptions.beauty on Fuse and FuseMany, and Beautify."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest
from facefuse_client import AsyncFacefuseClient, AuthError, FacefuseClient, InvalidPhotoError, InvalidRequestError
from gateway_helpers import target
from PIL import Image

from facefuse.samples import rgb

TEMPLATE = "hopper-portrait"


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_beautify_returns_the_photo_with_its_faces_adjusted(client, astronaut):
    photo = rgb(astronaut)
    result = client.beautify(astronaut, smoothing=60, brightening=40, output_format="png", add_label=False)
    out = pixels(result.image)
    assert result.format == "png" and out.shape == photo.shape
    changed = np.any(out.astype(int) != photo, axis=-1)
    assert changed.any() and changed.mean() < 0.25


def test_beautify_with_nothing_asked_changes_no_pixel(client, astronaut):
    png = io.BytesIO()
    Image.fromarray(rgb(astronaut)).save(png, format="PNG")
    out = pixels(client.beautify(png.getvalue(), output_format="png", add_label=False).image)
    assert np.array_equal(out, rgb(astronaut))


def test_fuse_and_fuse_many_apply_beauty_to_the_poster(client, astronaut):
    plain = pixels(client.fuse(astronaut, TEMPLATE, output_format="png", add_label=False).image)
    beautified = pixels(client.fuse(astronaut, TEMPLATE, output_format="png", add_label=False, smoothing=70,
                                    brightening=70).image)
    assert np.any(plain != beautified)
    many = client.fuse_many(astronaut, [TEMPLATE], output_format="png", add_label=False, smoothing=70, brightening=70)
    assert np.array_equal(pixels(many[0].image), beautified)


@pytest.mark.parametrize("field", ["smoothing", "brightening", "slimming", "eye_enlarging"])
def test_out_of_range_beauty_values_are_invalid_argument_with_the_reason(client, astronaut, field):
    for call in (lambda: client.beautify(astronaut, **{field: 120}),
                 lambda: client.fuse(astronaut, TEMPLATE, **{field: -5})):
        with pytest.raises(InvalidRequestError) as info:
            call()
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.reason == "INVALID_ARGUMENT"
        assert f"beauty {field}" in info.value.message and "0..100" in info.value.message


def test_beautify_refuses_a_face_the_photo_does_not_have_and_a_photo_without_a_face(client, astronaut, coffee):
    with pytest.raises(InvalidRequestError, match="faces 0..0"):
        client.beautify(astronaut, smoothing=50, face_index=2)
    with pytest.raises(InvalidRequestError, match="face_index 9 is out of range"):
        client.beautify(astronaut, smoothing=50, face_index=9)
    with pytest.raises(InvalidPhotoError) as info:
        client.beautify(coffee, smoothing=50)
    assert info.value.reason == "NO_FACE_DETECTED"
    assert client.beautify(astronaut, smoothing=50).image  # still serving


def test_beautify_needs_the_fuse_scope(gateway, credentials, astronaut):
    with FacefuseClient(target(gateway), api_key=credentials.list_only_key) as viewer:
        with pytest.raises(AuthError) as info:
            viewer.beautify(astronaut, smoothing=50)
    assert info.value.reason == "PERMISSION_DENIED"
    with FacefuseClient(target(gateway), api_key="not-a-key") as stranger:
        with pytest.raises(AuthError):
            stranger.beautify(astronaut, smoothing=50)


def test_the_async_client_beautifies_too(gateway, credentials, astronaut):
    async def call():
        async with AsyncFacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
            return await sdk.beautify(astronaut, eye_enlarging=80, output_format="png", add_label=False)

    out = pixels(asyncio.run(call()).image)
    assert out.shape == rgb(astronaut).shape and np.any(out != rgb(astronaut))


def test_the_cli_beautifies_a_photo_file(gateway, credentials, astronaut, tmp_path):
    from facefuse_client.cli import main

    photo, output = tmp_path / "in.jpg", tmp_path / "out.png"
    photo.write_bytes(astronaut)
    code = main(["--target", target(gateway), "--api-key", credentials.full_key, "beautify", str(photo), "-o",
                 str(output), "--smoothing", "60", "--slimming", "40", "--no-label"])
    assert code == 0 and pixels(output.read_bytes()).shape == rgb(astronaut).shape
