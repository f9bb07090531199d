"""The Beautify call, and beauty options read from requests (for Fuse and FuseMany too)."""

from __future__ import annotations

from facefuse_client.v1 import facefuse_pb2 as pb

from facefuse import contract
from facefuse.errors import OptionError
from facefuse.gateway.auth import SCOPE_FUSE
from facefuse.gateway.guard import Call
from facefuse.stages.beauty import ALL_FACES
from facefuse.triton_client import PHOTO_OUTPUT, FuseOptions, beautify_inputs
from facefuse.vision.beauty import BeautyOptions
from facefuse.vision.codec import check_photo

BEAUTIFY_ENSEMBLE = "face_beautify"
FORMATS = {"jpeg": pb.JPEG, "png": pb.PNG, "webp": pb.WEBP}


def beauty_from(message: pb.BeautyOptions) -> BeautyOptions:
    """The four values, checked (OptionError names the value and the range)."""
    return BeautyOptions(message.smoothing, message.brightening, message.slimming, message.eye_enlarging).validated()


def face_index_from(request: pb.BeautifyRequest) -> int:
    if not request.HasField("face_index"):
        return ALL_FACES
    if not 0 <= request.face_index < contract.MAX_FACES:
        raise OptionError(f"face_index {request.face_index} is out of range; use 0..{contract.MAX_FACES - 1} "
                          "(faces numbered left to right), or leave it out for every face")
    return request.face_index


class BeautifyCalls:
    """FaceFusionService's Beautify: the same guard (auth, quota, reasons), deadline
    checks and dispatch queue as fusion; one face_beautify call to Triton. The ensemble
    is not versioned by model releases (it holds no fusion model), so it is called by name."""

    async def Beautify(self, request: pb.BeautifyRequest, context) -> pb.BeautifyResponse:
        from facefuse.gateway.service import _output_format  # the module that imports this one

        deadline = self._deadline(context)

        async def work(call: Call) -> pb.BeautifyResponse:
            defaults = FuseOptions()
            options = FuseOptions(
                add_label=request.add_label if request.HasField("add_label") else defaults.add_label,
                output_format=_output_format(request.output_format),
                output_quality=request.output_quality if request.HasField("output_quality") else defaults.output_quality,
                beauty=beauty_from(request.beauty),
            ).validated()
            face_index = face_index_from(request)
            check_photo(request.photo, self.settings.max_image_bytes)
            self._check_deadline((BEAUTIFY_ENSEMBLE,), deadline, calls=1)
            inputs = beautify_inputs(request.photo, options.beauty, face_index, options.add_label,
                                     options.output_format, options.output_quality)
            with self.triton.reserve(1):
                result = await self.triton.infer(BEAUTIFY_ENSEMBLE, inputs, PHOTO_OUTPUT, deadline,
                                                 service=self._latency(BEAUTIFY_ENSEMBLE))
            image = bytes(result.as_numpy("photo").reshape(-1)[0])
            return pb.BeautifyResponse(request_id=call.request_id, image=image, format=FORMATS[options.output_format])

        return await self.guard(context, SCOPE_FUSE, "Beautify", request.request_id, work)
