"""What every Python-backend `model.py` shares: parameters, tensors, per-request errors.

Only imported inside Triton's Python-backend stub (it needs triton_python_backend_utils).
"""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from facefuse.errors import OptionError
from facefuse.server.responses import failure
from facefuse.stages.face_quality import warnings_text


def parameters(args: dict) -> dict[str, str]:
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    # Configs are built once per repository; FACEFUSE_TEMPLATE_DIR in the server's
    # environment points one server at another template folder (tests use a temporary one).
    if "template_dir" in params and os.environ.get("FACEFUSE_TEMPLATE_DIR"):
        params["template_dir"] = os.environ["FACEFUSE_TEMPLATE_DIR"]
    return params


def array(request, name: str) -> np.ndarray:
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


def text(request, name: str) -> str:
    """First element of a BYTES tensor, decoded."""
    value = array(request, name).reshape(-1)[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def response(**outputs: np.ndarray) -> "pb_utils.InferenceResponse":
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, value) for name, value in outputs.items()])


def verdict_tensors(of: str, quality: float, warnings: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A verdict as its two outputs, `{of}_quality` and `{of}_warnings`, for response(**...)."""
    return {f"{of}_quality": np.array([[quality]], np.float32),
            f"{of}_warnings": np.array([[warnings_text(warnings).encode()]], dtype=np.object_)}


def error_response(exc: Exception, request=None) -> "pb_utils.InferenceResponse":
    """One request's failure, carrying its stable reason; the batch goes on."""
    request_id = request.request_id() if request is not None and hasattr(request, "request_id") else ""
    code, message = failure(exc, request_id)
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, getattr(pb_utils.TritonError, code)))


def respond_each(requests, handle) -> list:
    """handle(request) -> response, with any exception turned into that request's error.

    Stages take one photo or poster per request (batch size 1): images differ in size,
    so rows of one request could not share a tensor anyway.
    """
    responses = []
    for request in requests:
        try:
            batch = request.inputs()[0].as_numpy().shape[0]
            if batch != 1:
                raise OptionError(f"send one item per request (batch size 1), got batch size {batch}")
            responses.append(handle(request))
        except Exception as exc:  # noqa: BLE001 - one bad request must not fail the batch
            responses.append(error_response(exc, request))
    return responses
