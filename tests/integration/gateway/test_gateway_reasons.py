"""Where each photo reason is decided, and what a caller sees on the wire.

Complements tests/integration/test_gateway.py (every reason through the SDK): here,
reasons the gateway can decide from bytes alone (size, magic bytes) must never cost a
Triton decode, reasons only the stages can decide must reach the caller unchanged, and
both arrive as a gRPC status with google.rpc.ErrorInfo (domain facefuse.v1) and the
`facefuse-reason` trailing key.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from facefuse_client import InvalidPhotoError, InvalidRequestError, TemplateNotFoundError
from gateway_helpers import TEMPLATE, encoded, first_stage, raw_fuse_error, requests_seen, rgb_of, wait_until
from PIL import Image

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def small_face(astronaut: bytes) -> bytes:
    """The astronaut shrunk to 110 px: her face is about 22 px, under the 34 px gate."""
    return encoded(np.asarray(Image.fromarray(rgb_of(astronaut)).resize((110, 110))))


def cut_face(astronaut: bytes) -> bytes:
    """Cut through the middle of her face."""
    return encoded(rgb_of(astronaut)[:, 225:])


BAD_PHOTOS = {
    # name: (photo from the fixtures' photos, reason, decided before Triton)
    "no-face": (lambda p: p["coffee"], "NO_FACE_DETECTED", False),
    "face-too-small": (lambda p: small_face(p["astronaut"]), "FACE_TOO_SMALL", False),
    "face-cut-off": (lambda p: cut_face(p["astronaut"]), "FACE_EXCEEDS_BORDER", False),
    "zero-bytes": (lambda p: b"", "IMAGE_DECODE_FAILED", True),
    "garbage": (lambda p: b"\x00\x13 these bytes are no image at all", "IMAGE_DECODE_FAILED", True),
    "truncated-jpeg": (lambda p: p["astronaut"][: len(p["astronaut"]) // 2], "IMAGE_DECODE_FAILED", False),
    "too-many-bytes": (lambda p: p["astronaut"] + b"\0" * (11 * 1024 * 1024), "IMAGE_TOO_LARGE", True),
    "too-many-pixels": (lambda p: encoded(np.zeros((16, 4200, 3), np.uint8), "PNG"), "IMAGE_PIXELS_EXCEEDED", False),
    "gif": (lambda p: encoded(rgb_of(p["astronaut"]), "GIF"), "IMAGE_FORMAT_UNSUPPORTED", True),
    "tiff": (lambda p: encoded(rgb_of(p["astronaut"]), "TIFF"), "IMAGE_FORMAT_UNSUPPORTED", True),
}


@pytest.fixture(scope="module")
def photos(astronaut, coffee):
    return {"astronaut": astronaut, "coffee": coffee}


@pytest.mark.parametrize("case", list(BAD_PHOTOS), ids=list(BAD_PHOTOS))
def test_a_bad_photo_is_judged_by_the_gateway_only_when_its_bytes_suffice(client, triton, photos, coffee, case):
    make_photo, reason, gateway_decides = BAD_PHOTOS[case]
    decoding = first_stage(triton)  # decode, or the cpu profile's detect_faces
    decodes_before = requests_seen(triton.grpc_url, decoding)
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse(make_photo(photos), TEMPLATE)
    assert error.value.reason == reason
    assert error.value.code is INVALID
    # Triton records statistics just after it answers, so two marker requests that
    # surely reach decode follow: once they show, the bad photo's decode (if any) shows.
    for _ in range(2):
        with pytest.raises(InvalidPhotoError):
            client.fuse(coffee, TEMPLATE)
    expected = decodes_before + 2 + (0 if gateway_decides else 1)
    wait_until(lambda: requests_seen(triton.grpc_url, decoding) >= expected, timeout_s=10, what=f"{decoding} statistics")
    assert requests_seen(triton.grpc_url, decoding) == expected


@pytest.mark.parametrize("case", ["no-face", "too-many-bytes"])
def test_a_reason_arrives_as_error_info_and_trailing_metadata_on_the_wire(gateway, credentials, photos, case):
    make_photo, reason, _ = BAD_PHOTOS[case]
    code, info, retry, trailing = raw_fuse_error(gateway, (("x-api-key", credentials.full_key),), make_photo(photos))
    assert code is INVALID
    assert (info.reason, info.domain) == (reason, "facefuse.v1")
    assert trailing["facefuse-reason"] == reason
    assert retry is None


def test_fuse_many_names_the_unknown_template(client, astronaut):
    with pytest.raises(TemplateNotFoundError) as error:
        client.fuse_many(astronaut, [TEMPLATE, "missing-one"])
    assert error.value.reason == "TEMPLATE_NOT_FOUND" and "missing-one" in str(error.value)


def test_too_many_templates_in_fuse_many_is_invalid_argument(client, astronaut):
    with pytest.raises(InvalidRequestError):
        client.fuse_many(astronaut, [TEMPLATE] * 11)


def test_a_bad_photo_in_a_multi_face_request_names_its_reason(client, astronaut, coffee):
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse_faces("group-six", [(astronaut, 0), (coffee, 2)])
    assert error.value.reason == "NO_FACE_DETECTED"
