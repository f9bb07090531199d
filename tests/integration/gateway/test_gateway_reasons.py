"""Every stable reason reaches the caller end to end: photo -> gateway -> Triton -> SDK.

Reasons decided by the gateway (size, magic bytes, options) and reasons decided by the
Triton stages (decode, face gates, template bank) arrive the same way: a gRPC status,
google.rpc.ErrorInfo in the details and `facefuse-reason` in the trailing metadata.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from facefuse_client import FacefuseError, InvalidPhotoError, InvalidRequestError, TemplateNotFoundError
from gateway_helpers import TEMPLATE, encoded, requests_seen, raw_fuse_error, rgb_of
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
def test_a_bad_photo_raises_invalid_photo_error_with_its_reason(client, triton, photos, case):
    make_photo, reason, gateway_decides = BAD_PHOTOS[case]
    photo = make_photo(photos)
    decodes_before = requests_seen(triton.grpc_url, "decode")
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse(photo, TEMPLATE)
    assert error.value.reason == reason
    assert error.value.code is INVALID
    # The gateway answers what it can check cheaply without Triton decoding anything.
    assert (requests_seen(triton.grpc_url, "decode") == decodes_before) is gateway_decides


@pytest.mark.parametrize("case", ["no-face", "too-many-bytes"])
def test_a_reason_arrives_as_error_info_and_trailing_metadata_on_the_wire(gateway, credentials, photos, case):
    make_photo, reason, _ = BAD_PHOTOS[case]
    code, info, retry, trailing = raw_fuse_error(gateway, (("x-api-key", credentials.full_key),), make_photo(photos))
    assert code is INVALID
    assert (info.reason, info.domain) == (reason, "facefuse.v1")
    assert trailing["facefuse-reason"] == reason
    assert retry is None


def test_an_unknown_template_is_template_not_found(client, astronaut):
    with pytest.raises(TemplateNotFoundError) as error:
        client.fuse(astronaut, "no-such-template")
    assert (error.value.reason, error.value.code) == ("TEMPLATE_NOT_FOUND", grpc.StatusCode.NOT_FOUND)


def test_a_face_index_the_template_lacks_is_template_face_not_found(client, astronaut):
    with pytest.raises(TemplateNotFoundError) as error:
        client.fuse(astronaut, TEMPLATE, face_index=3)
    assert error.value.reason == "TEMPLATE_FACE_NOT_FOUND"


def test_fuse_many_names_the_unknown_template(client, astronaut):
    with pytest.raises(TemplateNotFoundError) as error:
        client.fuse_many(astronaut, [TEMPLATE, "missing-one"])
    assert error.value.reason == "TEMPLATE_NOT_FOUND" and "missing-one" in str(error.value)


@pytest.mark.parametrize("options", [{"fuse_degree": 101.0}, {"profile_degree": -1.0}, {"output_quality": 0}])
def test_an_option_out_of_range_is_invalid_argument(client, astronaut, options):
    with pytest.raises(InvalidRequestError) as error:
        client.fuse(astronaut, TEMPLATE, **options)
    assert (error.value.reason, error.value.code) == ("INVALID_ARGUMENT", INVALID)


def test_too_many_templates_in_fuse_many_is_invalid_argument(client, astronaut):
    with pytest.raises(InvalidRequestError):
        client.fuse_many(astronaut, [TEMPLATE] * 11)


def test_a_bad_photo_in_a_multi_face_request_names_its_reason(client, astronaut, coffee):
    with pytest.raises(InvalidPhotoError) as error:
        client.fuse_faces("group-six", [(astronaut, 0), (coffee, 2)])
    assert error.value.reason == "NO_FACE_DETECTED"


def test_every_failure_is_a_facefuse_error_with_a_readable_message(client, coffee):
    with pytest.raises(FacefuseError) as error:
        client.fuse(coffee, TEMPLATE)
    assert str(error.value).startswith("NO_FACE_DETECTED: ") and "face" in error.value.message
