import io

import numpy as np
import pytest
from PIL import Image

from facefuse.errors import ImageError, OptionError, Reason
from facefuse.vision.codec import decode_image, encode_image, sniff_format


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def gradient(width=64, height=48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    return np.stack([np.tile(x, (height, 1)), np.full((height, width), 80, np.uint8), np.tile(x[::-1], (height, 1))], -1)


def test_formats_are_sniffed_from_magic_bytes():
    rgb = Image.fromarray(gradient())
    assert sniff_format(encoded(rgb, "JPEG")) == "JPEG"
    assert sniff_format(encoded(rgb, "PNG")) == "PNG"
    assert sniff_format(encoded(rgb, "WEBP")) == "WEBP"
    assert sniff_format(encoded(rgb, "GIF")) == "GIF"
    assert sniff_format(b"hello") is None


def test_png_with_alpha_is_flattened_onto_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:5] = [255, 0, 0, 255]  # opaque red top, transparent bottom
    out = decode_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG"), 4096)
    assert out.shape == (10, 10, 3)
    assert out[0, 0].tolist() == [255, 0, 0] and out[9, 9].tolist() == [255, 255, 255]


def test_greyscale_and_cmyk_jpegs_decode_to_rgb():
    grey = decode_image(encoded(Image.fromarray(gradient()[..., 0]), "JPEG"), 4096)
    assert grey.shape == (48, 64, 3) and np.all(grey[..., 0] == grey[..., 1])
    cmyk = decode_image(encoded(Image.fromarray(gradient()).convert("CMYK"), "JPEG", quality=95), 4096)
    assert cmyk.shape == (48, 64, 3)
    assert np.abs(cmyk.astype(int) - gradient().astype(int)).mean() < 8


def test_exif_orientation_is_honoured():
    image = Image.fromarray(gradient(64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    out = decode_image(encoded(image, "JPEG", exif=exif.tobytes()), 4096)
    assert out.shape == (64, 48, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_empty_and_garbage_bytes_are_decode_failures(data):
    with pytest.raises(ImageError) as info:
        decode_image(data, 4096)
    assert info.value.reason is Reason.IMAGE_DECODE_FAILED


def test_truncated_jpeg_is_a_decode_failure_not_a_grey_image():
    data = encoded(Image.fromarray(gradient(256, 256)), "JPEG", quality=95)
    with pytest.raises(ImageError) as info:
        decode_image(data[: len(data) // 2], 4096)
    assert info.value.reason is Reason.IMAGE_DECODE_FAILED


def test_gif_is_an_unsupported_format():
    with pytest.raises(ImageError) as info:
        decode_image(encoded(Image.fromarray(gradient()), "GIF"), 4096)
    assert info.value.reason is Reason.IMAGE_FORMAT_UNSUPPORTED


def test_too_many_pixels_is_refused_from_the_header():
    data = encoded(Image.new("RGB", (5000, 20)), "PNG")
    with pytest.raises(ImageError) as info:
        decode_image(data, 4096)
    assert info.value.reason is Reason.IMAGE_PIXELS_EXCEEDED
    assert "5000x20" in str(info.value)


def test_large_jpeg_is_decoded_at_reduced_scale_but_not_below_the_target():
    data = encoded(Image.fromarray(gradient(3000, 2000)), "JPEG")
    out = decode_image(data, 4096, target_side_px=1024)
    assert 1024 <= max(out.shape[:2]) < 3000


def test_encode_round_trips_and_rejects_unknown_formats():
    rgb = gradient()
    png = encode_image(rgb, "png")
    assert np.array_equal(decode_image(png, 4096), rgb)
    assert sniff_format(encode_image(rgb, "jpeg", 80)) == "JPEG"
    with pytest.raises(OptionError):
        encode_image(rgb, "tiff")
    with pytest.raises(OptionError):
        encode_image(rgb, "jpeg", 0)
