"""Hostile and mutated image bytes: what the decode stage and the gateway must answer
with a typed reason (never INTERNAL), used by the fuzz tests and `facefuse bench fuzz`.

`hostile_images` are the inputs found by hand (truncations, decompression bombs in PNG
text and ICC chunks, lying chunk lengths, garbage behind a valid magic number, MPO);
`mutate` derives more from real photos the way mutation fuzzers do (bit flips, byte
runs, truncation, splices, chunk duplication), reproducibly from a seed.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

INFLATED_BYTES = 8 * 1024 * 1024


def png_chunk(kind: bytes, data: bytes, declared_length: int | None = None) -> bytes:
    length = len(data) if declared_length is None else declared_length
    return struct.pack(">I", length) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _with_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """Insert chunks right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    return png[:33] + b"".join(chunks) + png[33:]


def _encoded(rgb_image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    rgb_image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def hostile_images(photo: Image.Image) -> dict[str, bytes]:
    """Named hostile inputs built around a real photo; every one must get a typed reason."""
    photo = photo.convert("RGB")
    jpeg, png, webp = _encoded(photo, "JPEG", quality=90), _encoded(photo, "PNG"), _encoded(photo, "WEBP")
    bomb = zlib.compress(b"\0" * INFLATED_BYTES, 9)
    rng = random.Random(10)
    return {
        "jpeg_first_600_bytes": jpeg[:600],
        "png_ztxt_inflating_to_8mib": _with_chunks(png, [png_chunk(b"zTXt", b"comment\0\0" + bomb)]),
        "png_iccp_inflating_to_8mib": _with_chunks(png, [png_chunk(b"iCCP", b"icc\0\0" + bomb)]),
        "png_80_ztxt_bombs": _with_chunks(png, [png_chunk(b"zTXt", b"c%d\0\0" % i + bomb) for i in range(80)]),
        "png_text_declaring_1mb_then_ending": png[:33] + png_chunk(b"tEXt", b"key\0value", declared_length=1_000_000),
        "bmp_magic_then_200_random_bytes": b"BM" + bytes(rng.getrandbits(8) for _ in range(200)),
        "webp_first_500_bytes": webp[:500],
        "jpeg_magic_only": jpeg[:3],
        "png_signature_only": png[:8],
        "png_cut_in_half": png[: len(png) // 2],
    }


def mpo(photo: Image.Image) -> bytes:
    """A Multi-Picture Object as phones write it: the photo, then a second picture."""
    photo = photo.convert("RGB")
    second = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _encoded(photo, "MPO", save_all=True, append_images=[second])


MUTATIONS = ("flip_bits", "overwrite_run", "truncate", "splice", "duplicate_run", "insert_random", "zero_run")


def mutate(data: bytes, seed: int, rounds: int = 3) -> bytes:
    """A reproducible mutation of `data` (one to `rounds` edits) keeping its first bytes
    mostly intact, so the decoder gets past the magic number and into the parser."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        if len(out) < 16:
            out += bytes(rng.getrandbits(8) for _ in range(16))
        kind = rng.choice(MUTATIONS)
        at = rng.randrange(4, len(out))
        size = min(len(out) - at, rng.choice((1, 4, 16, 256, 4096)))
        if kind == "flip_bits":
            for _ in range(rng.randint(1, 32)):
                i = rng.randrange(4, len(out))
                out[i] ^= 1 << rng.randrange(8)
        elif kind == "overwrite_run":
            out[at:at + size] = bytes(rng.getrandbits(8) for _ in range(size))
        elif kind == "truncate":
            del out[at:]
        elif kind == "splice":
            other = rng.randrange(4, len(out))
            out[at:at + size] = out[other:other + size]
        elif kind == "duplicate_run":
            out[at:at] = out[at:at + size] * rng.randint(2, 64)
        elif kind == "insert_random":
            out[at:at] = bytes(rng.getrandbits(8) for _ in range(size))
        elif kind == "zero_run":
            out[at:at + size] = bytes(size)
    return bytes(out)
