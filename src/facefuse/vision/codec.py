"""Image bytes <-> RGB arrays, with the checks callers get typed errors from."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facefuse.errors import ImageError, OptionError, Reason

# Formats a phone or a web page uploads. GIF (animation), TIFF and HEIC are refused
# with IMAGE_FORMAT_UNSUPPORTED rather than half-supported.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(data: bytes) -> str | None:
    """The container format named by the first bytes, without decoding anything."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return "HEIF"
    return None


def check_photo(photo: bytes, max_bytes: int, what: str = "photo") -> None:
    """Size and magic bytes only, for the gateway and the job service, which never decode pixels."""
    if not photo:
        raise ImageError(f"the {what} is empty (0 bytes)")
    if len(photo) > max_bytes:
        raise ImageError(f"the {what} is {len(photo)} bytes; at most {max_bytes} are accepted", Reason.IMAGE_TOO_LARGE)
    fmt = sniff_format(photo)
    if fmt is None:
        raise ImageError(f"the {what}'s bytes are not a JPEG, PNG, WEBP or BMP image (first bytes {photo[:8]!r})")
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(f"{what} format {fmt} is not supported; send JPEG, PNG, WEBP or BMP",
                         Reason.IMAGE_FORMAT_UNSUPPORTED)


def decode_image(data: bytes, max_side_px: int, target_side_px: int | None = None) -> np.ndarray:
    """Decode to an RGB uint8 array, upright per EXIF, alpha flattened onto white.

    Raises ImageError with IMAGE_DECODE_FAILED (empty, garbage, truncated),
    IMAGE_FORMAT_UNSUPPORTED or IMAGE_PIXELS_EXCEEDED (checked from the header,
    before the pixels are decoded).
    """
    if not data:
        raise ImageError("the image is empty (0 bytes); send the photo's file bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(str(exc), Reason.IMAGE_PIXELS_EXCEEDED) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{len(data)} bytes are not a JPEG, PNG, WEBP or BMP image (first bytes {data[:8]!r})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - headers of untrusted bytes: truncated, lying lengths, text bombs
        raise ImageError(f"the image header is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]})") from None
    # Phones write MPO: a JPEG followed by more pictures (depth, stereo). Pillow reads
    # the first, the photo itself, so it is served as the JPEG it starts with.
    fmt = "JPEG" if image.format == "MPO" else image.format
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(
            f"format {fmt} is not supported; send one of {', '.join(SUPPORTED_FORMATS)}",
            Reason.IMAGE_FORMAT_UNSUPPORTED,
        )
    width, height = image.size
    if max(width, height) > max_side_px:
        raise ImageError(
            f"image is {width}x{height} px; the longest side may be at most {max_side_px} px",
            Reason.IMAGE_PIXELS_EXCEEDED,
        )
    try:
        if target_side_px and fmt == "JPEG" and max(width, height) > target_side_px:
            # DCT-domain downscale (1/2, 1/4, 1/8) keeping the long side >= target:
            # decodes a 4000 px phone photo several times faster.
            ratio = target_side_px / max(width, height)
            image.draft("RGB", (int(np.ceil(width * ratio)), int(np.ceil(height * ratio))))
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
    except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is the caller's data
        raise ImageError(f"the {fmt} data is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]})") from None
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale PNG: scale to 8 bits rather than clip.
        values = np.asarray(image, dtype=np.float32)
        peak = max(float(values.max()), 1.0)
        image = Image.fromarray((values * (255.0 / peak)).astype(np.uint8))
    return image.convert("RGB")


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode an RGB uint8 array as jpeg, png or webp bytes."""
    fmt = fmt.lower()
    if not 1 <= quality <= 100:
        raise OptionError(f"output quality {quality} is out of range; use 1..100")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt in ("jpeg", "jpg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif fmt == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    else:
        raise OptionError(f"output format {fmt!r} is not supported; use jpeg, png or webp")
    if not ok:
        raise ImageError("encoding the result failed", Reason.INTERNAL)
    return buf.tobytes()
